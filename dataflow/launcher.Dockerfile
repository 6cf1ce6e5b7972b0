# embedpipe's Flex Template launcher: the worker image plus Google's Python template
# launcher, so the template is built and launched with exactly the workers' packages.
# It runs dataflow/flex_template.py (the prepare stage of a run; see its docstring).
# Build from the repository root, after the worker image:
#   docker build -f dataflow/launcher.Dockerfile --build-arg WORKER_IMAGE="$WORKER_IMAGE" \
#       -t "$LAUNCHER_IMAGE" .
# Pin LAUNCHER_BASE to a dated tag of the launcher base image in production.
ARG WORKER_IMAGE
ARG LAUNCHER_BASE=gcr.io/dataflow-templates-base/python311-template-launcher-base:latest
FROM ${LAUNCHER_BASE} AS template_launcher

FROM ${WORKER_IMAGE}
COPY --from=template_launcher /opt/google/dataflow/python_template_launcher \
    /opt/google/dataflow/python_template_launcher
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/app/dataflow/flex_template.py
# The package is installed in the image: no requirements or setup file at launch.
ENTRYPOINT ["/opt/google/dataflow/python_template_launcher"]
