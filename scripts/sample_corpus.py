#!/usr/bin/env python3
"""Write a small, deterministic sample corpus for the embedpipe demo.

The corpus holds 36 short English documents on clearly distinct topics (one file
per topic, 120-250 words in 2-4 paragraphs), plus three special documents:

* ``schwarzwald_de.txt`` - German prose about the Black Forest;
* ``sakura_ja.txt`` - Japanese prose about cherry-blossom viewing (hanami);
* ``history_of_computing.txt`` - a long document (about 9,000 characters, many
  paragraphs) so the text chunker splits it into several chunks.

Each document leans heavily on its own topic's vocabulary, because the demo's
embedding emulator uses hashed word and character n-gram features: a query that
shares distinctive words with one document should rank that document first.
``DEMO_QUERIES`` lists queries together with the file each one should find.

Standard library only. Output is byte-for-byte identical on every run.

Usage:  python3 scripts/sample_corpus.py OUT_DIR
"""
from __future__ import annotations

import argparse
import os


def _doc(*paragraphs: str) -> str:
    """Join paragraphs with a blank line; whitespace inside a paragraph (source
    line breaks and indentation) collapses to single spaces."""
    return "\n\n".join(" ".join(p.split()) for p in paragraphs) + "\n"


# Topic -> document text; the file written is ``<topic>.txt``. Insertion order is
# the write order, so the result is deterministic.
CORPUS: dict[str, str] = {
    "photosynthesis": _doc(
        """Photosynthesis is the process by which green plants, algae, and some
        bacteria turn sunlight into chemical energy stored in sugar. Inside the
        leaves, chloroplasts hold the green pigment chlorophyll, which absorbs
        mostly red and blue light and reflects green. Plants take in carbon
        dioxide through tiny leaf pores called stomata and draw water up from
        their roots; sunlight then powers the conversion of these raw materials
        into the sugar glucose, releasing oxygen as a by-product.""",
        """The process happens in two linked stages. In the light-dependent
        reactions, which take place in the thylakoid membranes, chlorophyll
        captures photons of sunlight and splits water molecules, producing
        oxygen and the energy carriers ATP and NADPH. In the Calvin cycle, which
        takes place in the stroma, the enzyme RuBisCO fixes carbon dioxide, and
        the energy carriers from the first stage are used to build three-carbon
        sugars that plants assemble into glucose, sucrose, and starch.""",
        """The overall equation is usually summarized as six molecules of carbon
        dioxide plus six molecules of water, powered by sunlight, yielding one
        molecule of glucose sugar and six molecules of oxygen. Photosynthesis
        supplies nearly all the oxygen in the atmosphere and forms the base of
        almost every food chain on Earth. Some plants in hot, dry climates use
        C4 or CAM photosynthesis to save water and limit wasteful
        photorespiration. In short, this is how plants turn sunlight into sugar
        and oxygen.""",
    ),
    "volcano_eruptions": _doc(
        """A volcano will erupt when molten rock called magma rises from deep
        inside the Earth and forces its way to the surface, where it is called
        lava. Magma forms in the mantle and lower crust, where rock melts because
        of high temperature, falling pressure, or added water. Being less dense
        than the surrounding rock, the magma ascends and collects in a magma
        chamber beneath the volcano. Dissolved gases such as water vapor, carbon
        dioxide, and sulfur dioxide build pressure as it rises, much like the
        bubbles in a shaken bottle of soda.""",
        """What makes a volcano erupt gently or explosively is mainly the
        magma's viscosity and gas content. Runny basaltic magma lets gas escape
        easily, so volcanoes like Kilauea in Hawaii produce effusive eruptions
        with rivers of glowing lava and lava fountains. Sticky, silica-rich
        andesitic and rhyolitic magma traps gas until it bursts violently,
        blasting volcanic ash, pumice, and rock fragments high into the sky.
        Pyroclastic flows, fast avalanches of hot ash and gas, are the deadliest
        volcano hazard, as the people of Pompeii discovered when Mount Vesuvius
        erupted in 79 AD.""",
        """Volcanologists monitor small earthquakes, ground swelling, and gas
        emissions to forecast when a volcano may erupt. Lava flows can bury roads
        and villages, and heavy falls of volcanic ash can collapse roofs and
        ground aircraft. Large eruptions can even
        cool the global climate, as Mount Pinatubo in the Philippines did after
        1991, when its ash cloud and sulfur aerosols spread through the
        stratosphere.""",
    ),
    "roman_aqueducts": _doc(
        """The Roman aqueducts were engineered channels that carried fresh water
        from distant springs and rivers into cities across the Roman Empire.
        Rome itself was eventually supplied by eleven aqueducts, the first of
        which, the Aqua Appia, was built in 312 BC under the censor Appius
        Claudius Caecus. Together they delivered an enormous volume of water each
        day to public fountains, baths, latrines, and the homes of the
        wealthy.""",
        """Contrary to popular images, most of an aqueduct's length ran
        underground in covered conduits cut through rock or built of masonry.
        The famous stone arches were used only where the channel had to cross
        valleys and low ground. Roman engineers relied on gravity alone, so the
        conduit had to descend with a gentle, steady gradient, sometimes only a
        few tens of centimeters per kilometer. Surveyors used instruments such as
        the chorobates and the groma to set these slopes with remarkable
        accuracy.""",
        """Settling tanks removed sediment, and a distribution tank called a
        castellum divided the flow among city districts through lead or
        terracotta pipes. Surviving examples include the Pont du Gard in
        southern France and the aqueduct of Segovia in Spain. The senator
        Frontinus, appointed water commissioner of Rome in 97 AD, wrote a
        detailed treatise on the city's aqueducts and their upkeep.""",
    ),
    "sourdough_baking": _doc(
        """Sourdough bread is leavened by a starter, a living culture of wild
        yeasts and lactic acid bacteria kept in a mixture of flour and water.
        Bakers maintain the starter by regularly discarding part of it and
        feeding it fresh flour and water. The yeasts produce carbon dioxide that
        leavens the dough, while the bacteria, mostly Lactobacillus species,
        produce lactic and acetic acids that give sourdough its tangy flavor and
        help the bread keep longer.""",
        """A typical sourdough loaf begins with a levain, a portion of active
        starter mixed a few hours before baking. The baker combines it with
        flour, water, and salt, often letting the flour and water rest first in
        an autolyse so the gluten develops. Instead of heavy kneading, many
        sourdough recipes use a series of stretch-and-folds during the bulk
        rise, which can take four to eight hours depending on the temperature of
        the dough.""",
        """After shaping, the dough proofs in a floured banneton basket, often
        overnight in the refrigerator, a step called retarding that deepens the
        sour flavor. The loaf is then scored with a razor blade called a lame
        and baked in a very hot Dutch oven, whose trapped steam allows strong
        oven spring and produces a crisp, blistered crust around an open, chewy
        crumb.""",
    ),
    "black_holes": _doc(
        """A black hole is a region of spacetime where gravity is so strong that
        nothing, not even light, can escape. Its boundary is called the event
        horizon, and for a non-rotating black hole the radius of that horizon is
        the Schwarzschild radius, which grows in proportion to the mass. At the
        center, general relativity predicts a singularity of infinite density,
        although physicists expect a future theory of gravity to change that
        picture.""",
        """Stellar-mass black holes form when a very massive star exhausts its
        nuclear fuel and its core collapses, often in a supernova explosion.
        Supermassive black holes, with millions to billions of solar masses, sit
        at the centers of most galaxies; the one in the Milky Way, Sagittarius
        A*, holds about four million solar masses.""",
        """Black holes are detected by their effects on nearby matter. Gas
        spiraling inward forms a hot accretion disk that glows in X-rays, and
        stars orbiting an unseen companion reveal its mass. In 2015 the LIGO
        observatories detected gravitational waves from two merging black holes,
        and in 2019 the Event Horizon Telescope released the first image of the
        shadow of the black hole in the galaxy M87. Stephen Hawking predicted
        that black holes slowly lose mass by emitting Hawking radiation.""",
    ),
    "honeybee_colonies": _doc(
        """A honeybee colony is a superorganism of tens of thousands of bees
        living together in a hive. Each colony has a single queen, whose job is
        to lay eggs, up to around two thousand a day in peak season. Thousands of
        female worker bees do all the other labor, and a few hundred male drones
        exist mainly to mate with queens from other colonies.""",
        """Worker bees change tasks as they age. Young workers clean cells, feed
        larvae with royal jelly and brood food, and build wax comb from glands on
        their abdomens. Older workers guard the hive entrance and finally become
        foragers, collecting nectar, pollen, water, and propolis. Foragers tell
        their hive mates where flowers are with the waggle dance: the angle of
        the dance relative to vertical shows the direction relative to the sun,
        and its duration shows the distance, as Karl von Frisch discovered.""",
        """Nectar is stored in hexagonal wax cells and ripened into honey by
        evaporation and enzymes. When a colony grows crowded in spring, the old
        queen leaves with part of the workforce in a swarm, while a new queen is
        raised in a special queen cell. Beekeepers inspect their hives regularly
        for threats to the colony such as the Varroa mite.""",
    ),
    "french_revolution": _doc(
        """The French Revolution was a period of radical political upheaval in
        France that began in 1789 and ended with the rise of Napoleon Bonaparte
        in 1799. A severe financial crisis, worsened by the cost of wars, poor
        harvests, and high bread prices, forced King Louis XVI to summon the
        Estates-General for the first time since 1614. Deputies of the Third
        Estate declared themselves a National Assembly and swore the Tennis
        Court Oath not to disband until France had a constitution.""",
        """On 14 July 1789 Parisian crowds stormed the Bastille, a royal fortress
        and prison that symbolized royal despotism. In August the Assembly
        abolished feudal privileges and adopted the Declaration of the Rights of
        Man and of the Citizen, proclaiming liberty, equality before the law, and
        popular sovereignty. The monarchy was abolished in September 1792, and
        the king was tried and executed by guillotine in January 1793.""",
        """As revolutionary France fought foreign monarchies and faced internal
        revolts, the Jacobins under Maximilien Robespierre dominated the
        Committee of Public Safety during the Reign of Terror, when thousands
        were executed. After Robespierre fell in 1794, the Directory governed
        until Napoleon seized power in the coup of 18 Brumaire.""",
    ),
    "jazz_improvisation": _doc(
        """Improvisation is the heart of jazz: musicians compose melodies
        spontaneously while performing, so no two renditions of a tune are ever
        the same. In a typical small-group performance, the band states the
        melody, or head, and then each soloist improvises over repeated cycles of
        the tune's chord progression, called choruses, before the head returns
        at the end.""",
        """Jazz improvisers draw on scales, arpeggios, and a vocabulary of licks
        learned by transcribing recordings of masters such as Louis Armstrong,
        Charlie Parker, and John Coltrane. They shape lines around chord tones,
        add passing notes and blue notes, and use tension and release to build a
        solo. The swing feel, with its lilting eighth notes, and the interplay
        with the rhythm section of piano, bass, and drums matter as much as
        harmonic knowledge.""",
        """Different jazz styles approach improvisation differently. Bebop
        players of the 1940s raced through complex harmony at fast tempos, while
        Miles Davis's 1959 album Kind of Blue popularized modal jazz, in which
        soloists explore a single scale for many bars. Free jazz pioneers like
        Ornette Coleman abandoned fixed chord changes altogether. Call and
        response, trading fours with the drummer, and quoting other melodies
        remain favorite devices on the bandstand.""",
    ),
    "coral_reefs": _doc(
        """Coral reefs are underwater ecosystems built by colonies of tiny
        animals called coral polyps. Each polyp secretes a skeleton of calcium
        carbonate, and over thousands of years these skeletons accumulate into
        massive reef structures. Reef-building corals live in partnership with
        single-celled algae called zooxanthellae, which live inside their tissues,
        supply most of their food, and give corals their vivid colors.""",
        """Coral reefs thrive in warm, clear, shallow tropical seas. Although they
        cover less than one percent of the ocean floor, they support roughly a
        quarter of all marine species, including parrotfish, clownfish, sea
        turtles, reef sharks, sponges, and giant clams. The Great Barrier Reef
        off northeastern Australia is the largest reef system on Earth,
        stretching more than 2,300 kilometers. Reefs also shelter coastlines from
        waves and storms and sustain fisheries and tourism.""",
        """Coral reefs face serious threats. When seawater becomes too warm,
        corals expel their zooxanthellae and fade to white, a process called
        coral bleaching that kills the polyps if it lasts too long. Ocean
        acidification caused by absorbed carbon dioxide hinders
        corals from building their skeletons, and pollution, overfishing, and
        destructive fishing also damage reefs.""",
    ),
    "chess_openings": _doc(
        """A chess opening is the first phase of a game, usually the first ten to
        fifteen moves, in which players develop their pieces, fight for the
        center of the board, and safeguard the king, often by castling. Because
        the starting position is always the same, chess openings have been
        studied extensively, and the accumulated knowledge is called opening
        theory.""",
        """Openings are grouped by their first moves. After 1.e4, popular replies
        include 1...e5, leading to the Ruy Lopez, the Italian Game, or the Scotch
        Game, and the Sicilian Defence, 1...c5, which creates an unbalanced fight
        and is the most common answer at master level. The French Defence and the
        Caro-Kann Defence are solid alternatives. After 1.d4, Black can choose
        the Queen's Gambit Declined, the Slav Defence, or hypermodern openings
        such as the King's Indian Defence and the Nimzo-Indian Defence, which let
        White build a pawn center and then attack it with pieces.""",
        """A gambit offers material, usually a pawn, in exchange for rapid
        development or attack; famous examples include the King's Gambit and the
        Evans Gambit. Chess players prepare an opening repertoire with books,
        databases, and engines, memorizing long lines of moves while trying to
        understand the ideas behind them.""",
    ),
    "human_immune_system": _doc(
        """The human immune system is the network of cells, tissues, and organs
        that defends the body against pathogens such as bacteria, viruses, fungi,
        and parasites. Its first barriers are physical and chemical: skin, mucous
        membranes, stomach acid, and antimicrobial enzymes in tears and
        saliva.""",
        """If a microbe gets past these barriers, the innate immune system
        responds within minutes to hours. White blood cells such as neutrophils
        and macrophages engulf invaders by phagocytosis, natural killer cells
        destroy infected cells, and inflammation brings fluid and more immune
        cells to the site, causing redness, heat, and swelling. The complement
        system, a cascade of blood proteins, marks microbes for destruction.""",
        """The adaptive immune system is slower but highly specific. Dendritic
        cells carry fragments of pathogens, called antigens, to the lymph nodes,
        where they activate lymphocytes. B cells mature into plasma cells that
        secrete antibodies, Y-shaped proteins that bind particular antigens,
        while helper T cells coordinate the immune response and cytotoxic T cells
        kill infected cells. Memory B and T cells persist for years, allowing a
        faster, stronger response to reinfection.""",
        """Lymphocytes develop in the bone marrow and the thymus, and the spleen
        and lymph nodes filter blood and lymph. When the immune system misfires,
        it can cause allergies or autoimmune diseases such as type 1 diabetes and
        rheumatoid arthritis.""",
    ),
    "plate_tectonics": _doc(
        """Plate tectonics is the scientific theory that Earth's rigid outer
        shell, the lithosphere, is broken into about a dozen large tectonic
        plates and many smaller ones that move slowly over the softer, hotter
        asthenosphere beneath. The plates travel a few centimeters per year,
        about as fast as fingernails grow, driven by mantle convection, slab
        pull, and ridge push.""",
        """Most geological activity happens at plate boundaries. At divergent
        boundaries, such as the Mid-Atlantic Ridge, plates move apart and new
        oceanic crust forms through seafloor spreading. At convergent
        boundaries, plates collide: dense oceanic crust sinks beneath another
        plate in a subduction zone, forming deep ocean trenches like the Mariana
        Trench, while continental collisions push up mountain ranges such as the
        Himalayas. At transform boundaries, like the San Andreas Fault in
        California, plates slide past one another and release built-up stress in
        earthquakes.""",
        """The theory grew from Alfred Wegener's 1912 hypothesis of continental
        drift, which he supported with matching coastlines, fossils, and rock
        formations on opposite sides of oceans, pointing to a former
        supercontinent called Pangaea. Wegener lacked a convincing mechanism,
        but in the 1960s the discovery of magnetic striping on the seafloor
        confirmed seafloor spreading and led to the modern theory of plate
        tectonics.""",
    ),
    "printing_press": _doc(
        """The printing press with movable metal type was developed by Johannes
        Gutenberg in Mainz, Germany, around 1440. Before then, books in Europe
        were copied by hand by scribes or printed from carved woodblocks, while
        in China and Korea movable type of ceramic, wood, and bronze had already
        been used. Gutenberg's achievement was a complete printing system: a hand
        mould for casting uniform type from an alloy of lead, tin, and antimony,
        an oil-based ink that adhered to metal type, and a screw press adapted
        from presses used for grapes and olives.""",
        """His most famous work, the Gutenberg Bible, was completed around 1455
        in about 180 copies. Printing spread rapidly; by 1500 printing presses
        operated in more than 250 European towns and had produced millions of
        volumes, the early printed books now called incunabula. Venice became a
        major printing center, where Aldus Manutius introduced italic type and
        small, portable editions.""",
        """The printing press transformed European society. It lowered the cost
        of books, standardized texts and spelling, and spread the ideas of the
        Renaissance, the Scientific Revolution, and the Protestant Reformation,
        whose printed pamphlets by Martin Luther circulated in huge numbers.
        Literacy rose as printed material became widely available.""",
    ),
    "marathon_training": _doc(
        """Marathon training prepares a runner to cover 42.195 kilometers, or
        26.2 miles, the distance first run at the 1908 London Olympics and made
        standard in 1921. Most beginner marathon training plans last sixteen to
        twenty weeks and build weekly running mileage gradually, often by no more
        than about ten percent per week, so that muscles, tendons, and bones can
        adapt without injury.""",
        """The cornerstone of any marathon training plan is the weekly long run,
        which increases step by step to around 30 to 35 kilometers a few weeks
        before race day. Most running should be at an easy, conversational pace
        to build aerobic endurance, while a smaller share of the plan includes
        tempo runs at a comfortably hard effort, interval sessions on the track,
        and running at goal marathon pace. Rest days, cross-training, and
        strength work help prevent running injuries such as shin splints and
        runner's knee.""",
        """In the final two or three weeks of the plan the runner tapers, cutting
        training volume so the body arrives fresh at the start line. A good
        training plan also covers fueling for running a marathon: practicing
        with energy gels and fluids on long runs, and eating plenty of
        carbohydrates before the race to top up glycogen stores and avoid
        hitting the wall.""",
    ),
    "glaciers": _doc(
        """A glacier is a large, persistent body of ice that forms on land where
        more snow falls in winter than melts in summer. Over many years, buried
        snow compacts into granular firn and finally into dense glacial ice. When
        the ice is thick enough, usually several tens of meters, the glacier
        begins to flow under its own weight, by internal deformation and by
        sliding over meltwater at its base.""",
        """Glaciers include mountain or valley glaciers, confined by surrounding
        peaks, and vast continental ice sheets, which today cover Antarctica and
        Greenland and hold most of Earth's fresh water. A glacier's health
        depends on its mass balance: the accumulation zone gains snow, while the
        ablation zone loses ice through melting, sublimation, and the calving of
        icebergs.""",
        """Moving glacial ice is a powerful agent of erosion. Glaciers carve
        U-shaped valleys, cirques, sharp horns such as the Matterhorn, and fjords,
        and they deposit moraines and erratic boulders when they retreat. During
        the last ice age, ice sheets covered much of North America and northern
        Europe. Today most mountain glaciers are retreating as the climate warms,
        contributing to sea-level rise and threatening water supplies for
        communities that depend on seasonal meltwater.""",
    ),
    "quantum_entanglement": _doc(
        """Quantum entanglement is a phenomenon in which two or more particles
        share a single quantum state, so that measuring one immediately
        determines the correlated outcome for the other, however far apart they
        are. For example, two photons can be entangled so that their
        polarizations are always found to be opposite, even though neither photon
        has a definite polarization before it is measured.""",
        """In 1935 Albert Einstein, Boris Podolsky, and Nathan Rosen argued in the
        EPR paper that such correlations meant quantum mechanics was incomplete,
        and Einstein later called entanglement "spooky action at a distance." In
        1964 John Bell showed that any theory of local hidden variables must obey
        certain statistical limits, now called Bell inequalities, which quantum
        mechanics predicts can be violated. Experiments by John Clauser, Alain
        Aspect, and Anton Zeilinger confirmed the violations and earned the 2022
        Nobel Prize in Physics.""",
        """Entanglement does not allow faster-than-light communication, because
        each individual measurement result is random; the correlations appear
        only when results are compared through ordinary channels. Entanglement is
        nevertheless a key resource for quantum technologies, including quantum
        computers, quantum teleportation of states, and quantum key
        distribution, which uses entangled photons to share secret keys whose
        interception can be detected.""",
    ),
    "origami": _doc(
        """Origami is the art of folding paper into shapes and figures,
        traditionally from a single square sheet without cutting or gluing. The
        word comes from the Japanese oru, to fold, and kami, paper. Paper folding
        was practiced in Japan for ceremonial wrappings, and by the Edo period
        recreational models had become popular; the oldest known book of origami
        instructions, Senbazuru Orikata, was published in 1797 and shows
        connected paper cranes.""",
        """Most origami models are built from a small set of basic folds. A
        valley fold bends the paper toward the folder, and a mountain fold bends
        it away. Combinations of these create reverse folds, squash folds, and
        petal folds, and traditional bases such as the bird base, the waterbomb
        base, and the preliminary base serve as starting points for many designs.
        The paper crane, or orizuru, is the best-known origami model and a symbol
        of peace and hope.""",
        """In the twentieth century Akira Yoshizawa created hundreds of new
        origami models, developed wet-folding, and devised the system of folding
        diagram notation later popularized by Samuel Randlett and Robert Harbin.
        Modern designers such as Robert Lang use mathematics and crease patterns
        to fold intricate insects and animals, and origami folding principles now
        inform engineering, from deployable structures on satellites to medical
        stents and car airbags.""",
    ),
    "tea_cultivation": _doc(
        """All true tea comes from one species, Camellia sinensis, an evergreen
        shrub native to the region where China, India, and Myanmar meet. Two main
        varieties are cultivated: the small-leaved Chinese variety, which
        tolerates cooler weather, and the large-leaved Assam variety, suited to
        hot, humid lowlands. Tea bushes thrive in acidic, well-drained soil with
        abundant rainfall, and many of the finest teas come from high-altitude
        gardens such as those of Darjeeling, where slow growth concentrates
        flavor.""",
        """On tea estates, also called tea gardens, the bushes are pruned into
        flat-topped tables about waist high so that workers can pluck the tender
        new growth. The classic plucking standard is "two leaves and a bud,"
        picked by hand every week or two during the growing season, which yields
        several flushes a year. Some Japanese growers shade their tea bushes for
        weeks before the harvest to produce gyokuro and matcha.""",
        """Processing determines the type of tea. For green tea, the fresh leaves
        are heated by steaming or pan-firing soon after plucking to stop
        oxidation. For black tea, they are withered, rolled to break the cells,
        and allowed to oxidize fully before drying. Oolong tea is partially
        oxidized, and white tea is simply withered and dried. China, India,
        Kenya, and Sri Lanka are the largest tea producers.""",
    ),
    "silk_road": _doc(
        """The Silk Road was a network of overland trade routes that linked China
        with Central Asia, Persia, India, the Middle East, and the Mediterranean
        world from the second century BC until the fifteenth century. Its name,
        coined by the German geographer Ferdinand von Richthofen in 1877, comes
        from Chinese silk, a luxury fabric highly prized in Rome.""",
        """The routes opened after the Han dynasty envoy Zhang Qian traveled west
        around 138 BC. From the capital Chang'an, caravans of Bactrian camels
        skirted the Taklamakan Desert through oasis towns such as Dunhuang,
        Turpan, and Kashgar, then crossed the Pamir Mountains toward Samarkand,
        Bukhara, and Merv. Few merchants traveled the whole distance; goods passed
        from trader to trader, with Sogdian merchants acting as key middlemen.
        Caravanserais offered lodging to caravans along the way.""",
        """Besides silk, the caravans carried spices, jade, horses, glassware,
        paper, and precious metals. Ideas moved too: Buddhism spread along the
        Silk Road from India into China, and papermaking traveled west. The
        Mongol Empire revived the routes in the thirteenth century, when Marco
        Polo made his famous journey, but the Black Death and the rise of
        maritime trade contributed to their decline.""",
    ),
    "solar_panels": _doc(
        """Solar panels convert the energy of the sun's rays directly into
        electricity using the photovoltaic effect. Most panels are made of
        crystalline silicon solar cells, each a thin wafer doped to form a p-n
        junction. When photons strike the cell, they knock electrons loose, and
        the built-in electric field at the junction pushes them through an
        external circuit as direct current. A typical panel traditionally
        contains 60 or 72 cells wired in series, protected by tempered glass and
        an aluminum frame.""",
        """Monocrystalline panels, cut from a single silicon crystal, are the most
        efficient, with commercial modules converting roughly 20 to 23 percent of
        incoming solar energy, while polycrystalline panels are cheaper but
        slightly less efficient. Thin-film technologies such as cadmium telluride
        use far less material. Because solar panels produce direct current, an
        inverter converts it to alternating current for homes and the grid, and
        batteries can store surplus power for the night.""",
        """Panel output depends on orientation, tilt, shading, and temperature;
        photovoltaic cells actually lose efficiency as they get hot. Installations
        range from rooftop systems to utility-scale solar farms covering many
        square kilometers. The price of photovoltaic modules fell by roughly
        ninety percent during the 2010s, making solar power one of the cheapest
        sources of new electricity in many countries.""",
    ),
    "whale_migration": _doc(
        """Many great whales undertake some of the longest migrations of any
        mammal, traveling each year between cold, productive feeding grounds near
        the poles and warm tropical breeding grounds. Humpback whales, for
        example, spend summer feeding on krill and small fish in polar waters,
        then swim thousands of kilometers to calving grounds around Hawaii, in
        the Caribbean, or off the coast of Australia, where they mate and give
        birth.""",
        """Gray whales make one of the best-documented migrations, a round trip of
        up to about 20,000 kilometers between their Arctic feeding grounds in the
        Bering and Chukchi Seas and the warm lagoons of Baja California in
        Mexico. Mothers and newborn calves migrate north in spring, often hugging
        the coastline to avoid killer whales. Blue whales and fin whales also
        migrate, although their routes are less predictable.""",
        """Scientists think whales migrate because polar seas offer abundant food,
        while warm waters are safer and energetically easier for calves, which
        are born with little blubber. During the breeding season many whales
        barely eat, living off their fat reserves. Researchers follow whale
        migration with satellite tags, photo-identification of tail flukes, and
        underwater microphones that record whale songs. Whales may navigate
        using the Earth's magnetic field, the position of the sun, and features
        of the seafloor.""",
    ),
    "medieval_castles": _doc(
        """Medieval castles were fortified residences built by kings and nobles in
        Europe and the Middle East between roughly the tenth and sixteenth
        centuries. They served as military strongholds, administrative centers,
        and symbols of lordship over the surrounding land. The earliest castles
        in England, introduced after the Norman Conquest of 1066, were
        motte-and-bailey castles: a wooden tower on an earthen mound, or motte,
        overlooking an enclosed courtyard, the bailey, protected by a ditch and a
        timber palisade.""",
        """Stone soon replaced timber. Massive square keeps, such as the White
        Tower in London, became the heart of many castles. Later castles relied
        on concentric curtain walls with round towers, which resisted
        undermining better than square corners. Defenders used battlements with
        crenellations, arrow slits, and machicolations through which stones
        could be dropped. The gatehouse, the castle's most vulnerable point, was
        protected by a drawbridge over a moat, an iron-clad portcullis, and
        murder holes.""",
        """Attackers besieged castles with trebuchets, battering rams, siege
        towers, and mining, but starvation was often the most effective weapon.
        Edward I's castles in Wales, such as Harlech and Beaumaris, are famous
        examples of concentric design. The spread of gunpowder artillery in the
        fifteenth century made high castle walls vulnerable, and castles
        gradually gave way to low artillery forts and unfortified palaces.""",
    ),
    "vaccines": _doc(
        """A vaccine teaches the immune system to recognize a specific pathogen
        without causing the disease. Vaccines expose the body to an antigen, a
        harmless piece or weakened version of a virus or bacterium, so that it
        produces antibodies and memory cells. If the vaccinated person later
        meets the real pathogen, the body recognizes it and responds quickly,
        preventing illness or reducing its severity.""",
        """Edward Jenner laid the foundation in 1796 when he showed that
        inoculating a boy with material from a cowpox sore protected him against
        smallpox; the word vaccine comes from the Latin vacca, meaning cow. Louis
        Pasteur later developed vaccines against chicken cholera, anthrax, and
        rabies. Smallpox was declared eradicated in 1980 after a global
        vaccination campaign, and polio has been eliminated from most of the
        world.""",
        """Vaccine types include live attenuated vaccines such as the measles,
        mumps, and rubella vaccine; inactivated vaccines such as the injected
        polio vaccine; subunit and toxoid vaccines like those against hepatitis B
        and tetanus; and messenger RNA vaccines, first widely used against
        COVID-19 in 2020, which instruct cells to make a viral protein. Many
        vaccines need booster doses. When enough people are immunized, herd
        immunity protects those who cannot be vaccinated, such as newborns.
        Every vaccine goes through clinical trials before approval, and safety
        monitoring continues afterward.""",
    ),
    "apollo_moon_landing": _doc(
        """On 20 July 1969 NASA's Apollo 11 mission landed the first humans on the
        Moon. Astronauts Neil Armstrong and Buzz Aldrin descended to the Sea of
        Tranquility in the lunar module Eagle while Michael Collins orbited above
        in the command module Columbia. Stepping onto the lunar surface,
        Armstrong said, "That's one small step for man, one giant leap for
        mankind." """,
        """The Apollo program answered President John F. Kennedy's 1961 challenge
        to land a man on the Moon and return him safely to Earth before the
        decade was out, a goal driven by the space race with the Soviet Union.
        The Apollo 11 crew launched from Kennedy Space Center on a Saturn V, the
        most powerful rocket flown at the time. During the final descent, the
        lunar module's guidance computer raised program alarms, and Armstrong
        took manual control to steer past a boulder field, touching down with
        little fuel to spare.""",
        """Armstrong and Aldrin spent about two and a half hours outside on the
        lunar surface, raising the American flag, deploying experiments such as a
        seismometer and a laser retroreflector, and collecting 21.5 kilograms of
        Moon rock and soil. The crew splashed down in the Pacific Ocean on 24
        July. Five more Apollo missions landed on the Moon by the end of 1972,
        and in all twelve astronauts walked on the lunar surface.""",
    ),
    "bonsai": _doc(
        """Bonsai is the Japanese art of growing miniature trees in shallow
        containers, shaped to suggest the form of a mature tree in nature. The
        practice grew out of the Chinese art of penjing and was refined in Japan
        over many centuries. Bonsai are not genetically dwarf trees: they are
        ordinary trees and shrubs, such as junipers, pines, maples, azaleas, and
        figs, kept small by careful pruning and by restricting the roots.""",
        """Growers shape a bonsai tree with several techniques. Branch pruning
        sets the structure, while regular pinching of new shoots and leaf pruning
        refine the foliage and reduce leaf size. Copper or aluminum wire wrapped
        around branches bends them into position over months, after which the
        wire is removed before it bites into the bark. Every few years the bonsai
        is repotted and its roots trimmed in a free-draining soil mix, often
        containing akadama clay.""",
        """Classic bonsai styles include the formal upright, informal upright,
        slanting, cascade, literati, and windswept forms, as well as miniature
        group forests. Deadwood features called jin and shari imitate the scars
        left by lightning and harsh weather. Well-kept bonsai can live for
        centuries, and some specimens in Japan are hundreds of years old and have
        been passed down through generations of bonsai masters.""",
    ),
    "cryptography": _doc(
        """Cryptography is the science of protecting information by transforming
        it into a form that unauthorized parties cannot read. Plaintext is
        encrypted into ciphertext using an algorithm, called a cipher, and a
        secret key; only someone with the correct key can decrypt it. Early
        ciphers include the Caesar cipher, which shifts each letter by a fixed
        number of places, and substitution ciphers, which were broken by
        frequency analysis, a method described by the Arab scholar al-Kindi in
        the ninth century.""",
        """In the twentieth century cryptography became mechanized. The German
        Enigma cipher machine used rotating wheels to scramble messages, and
        codebreakers at Bletchley Park, including Alan Turing, exploited its
        weaknesses to read Axis communications during the Second World War.
        Modern symmetric ciphers such as the Advanced Encryption Standard (AES)
        use the same key for encryption and decryption and are extremely
        fast.""",
        """Public-key cryptography, introduced by Whitfield Diffie and Martin
        Hellman in 1976, and the RSA algorithm of 1977 solved the problem of
        sharing keys: each user has a public key that anyone can use to encrypt
        and a private key that is kept secret. Its security rests on hard
        mathematical problems such as factoring large numbers. Cryptographic hash
        functions like SHA-256 and digital signatures protect integrity and
        authenticity, securing HTTPS websites, online banking, and messaging
        apps.""",
    ),
    "hurricanes": _doc(
        """A hurricane is a powerful tropical cyclone with sustained winds of at
        least 119 kilometers per hour (74 miles per hour). The same kind of storm
        is called a typhoon in the northwestern Pacific and a cyclone in the
        Indian Ocean and South Pacific. Hurricanes form over warm ocean water,
        usually at least 26.5 degrees Celsius, where moist air rises, cools, and
        condenses into towering thunderstorms, releasing latent heat that fuels
        the storm.""",
        """The Coriolis effect caused by Earth's rotation sets the storm spinning,
        counterclockwise in the Northern Hemisphere and clockwise in the Southern
        Hemisphere. A mature hurricane has a calm, clear eye at its center,
        surrounded by the eyewall, where the strongest winds and heaviest rain
        occur, and spiral rainbands extending hundreds of kilometers outward. The
        Saffir-Simpson scale rates hurricanes from Category 1 to Category 5 by
        their wind speed.""",
        """The greatest hurricane danger is often storm surge, a dome of seawater
        pushed onto the coast by the wind, which overwhelmed the levees of New
        Orleans during Hurricane Katrina in 2005. Torrential rain can also cause
        inland flooding, as Hurricane Harvey did in Texas in 2017. Forecasters at
        the National Hurricane Center track storms with satellites,
        reconnaissance aircraft nicknamed Hurricane Hunters, and computer models.
        Hurricanes weaken over land or cool water because they lose their supply
        of warm, moist air.""",
    ),
    "penguins": _doc(
        """Penguins are flightless seabirds that live almost exclusively in the
        Southern Hemisphere, from the icy coasts of Antarctica to the temperate
        shores of South America, South Africa, Australia, and New Zealand; the
        Galapagos penguin even lives near the equator. There are about eighteen
        penguin species, ranging from the little penguin, roughly 30 centimeters
        tall, to the emperor penguin, which stands over a meter tall and can
        weigh more than 30 kilograms.""",
        """Penguins are superbly adapted to swimming. Their wings have evolved
        into stiff flippers that propel them underwater, their bodies are
        streamlined, and dense, overlapping feathers over a layer of blubber keep
        them warm. Their black backs and white bellies provide countershading
        camouflage from predators such as leopard seals and orcas. Emperor
        penguins can dive deeper than 500 meters in pursuit of fish, squid, and
        krill.""",
        """Most penguins breed in large, noisy colonies called rookeries. Emperor
        penguins breed during the Antarctic winter: the female lays a single egg
        and returns to the sea, while the male balances it on his feet under a
        fold of skin called a brood pouch for about two months, huddling with
        other males against blizzards. Many penguin species are threatened by
        climate change, overfishing, and the loss of sea ice.""",
    ),
    "wine_fermentation": _doc(
        """Wine is made by fermenting grape juice, a process in which yeast
        converts the grapes' natural glucose and fructose into ethyl alcohol and
        carbon dioxide. After the harvest, grapes are crushed to release their
        juice, called must. For white wine the grape skins are usually separated
        before fermentation, while red wine ferments together with the skins,
        which give it color, tannin, and flavor.""",
        """Winemakers may rely on wild yeasts present on the grapes and in the
        winery or add cultured strains of Saccharomyces cerevisiae. Fermentation
        temperature strongly affects the style of the wine: white wines are often
        fermented cool, around 12 to 18 degrees Celsius, to preserve fruity
        aromas, while reds ferment warmer to extract pigments. During red wine
        fermentation the floating cap of skins is punched down or pumped over to
        keep it moist. Fermentation ends when the yeast has consumed nearly all
        the glucose and fructose, leaving a dry wine, or when the winemaker stops
        it early, leaving residual sweetness.""",
        """Many wines then undergo malolactic fermentation, in which bacteria
        convert sharp malic acid into softer lactic acid. The wine is racked off
        its sediment, or lees, and may be aged in oak barrels or stainless steel
        tanks before fining, filtering, and bottling. Sparkling wines such as
        Champagne undergo a second fermentation in the bottle, which traps carbon
        dioxide as bubbles.""",
    ),
    "great_wall_of_china": _doc(
        """The Great Wall of China is a series of fortifications built across
        northern China over roughly two thousand years to protect Chinese states
        and empires against raids and invasions by nomadic peoples of the
        Eurasian steppe. The earliest walls were built by rival states during the
        Warring States period, and after unifying China in 221 BC, the first
        emperor, Qin Shi Huang, linked and extended them.""",
        """Later dynasties, especially the Han, added long sections, but most of
        the Great Wall standing today was built by the Ming dynasty between the
        fourteenth and seventeenth centuries, largely of brick and stone. Earlier
        walls were mostly made of rammed earth, with layers of soil pounded
        between wooden frames. The Ming wall stretches from Shanhaiguan near the
        Bohai Sea to Jiayuguan in the western Gansu corridor, and a 2012 Chinese
        survey put the total length of all wall sections from every dynasty at
        about 21,196 kilometers.""",
        """The Great Wall was more than a barrier. Watchtowers and beacon towers
        along its length sent warnings with smoke by day and fire by night,
        garrisons were stationed at forts and mountain passes, and the wall
        helped control trade and migration. Soldiers, peasants, and convicts
        supplied the labor. Contrary to a popular myth, the Great Wall of China
        is not visible to the naked eye from the Moon. Sections such as Badaling
        and Mutianyu near Beijing draw millions of visitors, and the wall became
        a UNESCO World Heritage Site in 1987.""",
    ),
    "electric_guitars": _doc(
        """The electric guitar uses electromagnetic pickups to convert the
        vibration of its steel strings into an electrical signal, which is sent
        to a guitar amplifier and loudspeaker. A pickup consists of permanent
        magnets wrapped in a coil of thousands of windings of fine copper wire; a
        vibrating string disturbs the magnetic field and induces a small
        alternating current in the coil.""",
        """Early electric guitars appeared in the 1930s, such as the Rickenbacker
        "Frying Pan" lap steel. Solid-body electric guitars reduced the feedback
        that plagued hollow-body instruments: Fender introduced its solid-body
        Esquire and Broadcaster in 1950, renamed the Telecaster in 1951, followed
        by the Stratocaster in 1954, while Gibson released the Les Paul in 1952.
        Single-coil pickups produce a bright, clear guitar tone but also pick up
        hum, so Seth Lover at Gibson designed the humbucker, which uses two coils
        wired out of phase to cancel the noise.""",
        """Much of an electric guitar's character comes from the amplifier and
        effects. Overdriven tube amps produce distortion, which became central to
        rock and heavy metal through guitarists like Jimi Hendrix, Eric Clapton,
        and Jimmy Page. Effects pedals add wah, fuzz, delay, reverb, and chorus,
        and a tremolo arm, or whammy bar, bends the pitch. Guitarists shape their
        sound with volume and tone knobs and a pickup selector switch.""",
    ),
    "rainforests": _doc(
        """Tropical rainforests are dense, warm, wet forests found near the
        equator, in the Amazon Basin, the Congo Basin, Southeast Asia, and parts
        of Central America and northeastern Australia. They receive more than
        about 2,000 millimeters of rain a year and stay warm year-round, and
        although rainforests cover only around six percent of Earth's land
        surface, they are home to more than half of the world's land-dwelling
        species.""",
        """A rainforest is organized in layers. Emergent trees rise above a
        closed canopy thirty to forty-five meters high, where most of the fruit,
        flowers, and animal life are found. Below lie the understory of young
        trees, shrubs, and palms, and the dim forest floor, which receives only
        about two percent of the light that reaches the canopy. Epiphytes such as
        orchids and bromeliads grow on branches, and woody lianas climb toward
        the canopy. Rainforest animals include jaguars, howler monkeys, sloths,
        toucans, poison dart frogs, and countless insects.""",
        """Despite the lush vegetation, rainforest soils are usually thin and
        poor, because heavy rain leaches nutrients and dead material decomposes
        and is recycled rapidly. Rainforests store vast amounts of carbon and help
        regulate rainfall; the Amazon generates much of its own rain through
        transpiration. Deforestation for cattle ranching, soy, palm oil, logging,
        and mining destroys millions of hectares of rainforest each year,
        threatening biodiversity and indigenous peoples.""",
    ),
    "mount_everest_climbing": _doc(
        """Mount Everest, at 8,849 meters the highest mountain above sea level,
        sits on the border between Nepal and the Tibet region of China in the
        Himalayas. Nepalis call it Sagarmatha and Tibetans call it Chomolungma.
        Edmund Hillary of New Zealand and Tenzing Norgay, a Sherpa mountaineer
        from Nepal, made the first confirmed ascent on 29 May 1953 with a British
        expedition, and in 1978 Reinhold Messner and Peter Habeler reached the
        summit of Everest without supplemental oxygen.""",
        """Most Everest climbers today follow one of two routes. The South Col
        route from Nepal starts at Everest Base Camp, crosses the dangerous
        Khumbu Icefall, and climbs through the Western Cwm and up the Lhotse Face
        to the South Col, before the final push along the Southeast Ridge to the
        summit. The Northeast Ridge route climbs from Tibet. Climbers spend weeks
        acclimatizing, making rotations between high camps so their bodies
        produce more red blood cells for the thin air.""",
        """Above about 8,000 meters lies the death zone, where the air holds
        roughly a third of the oxygen available at sea level and the body
        steadily deteriorates. Most climbers use bottled oxygen and rely on
        Sherpa guides who fix ropes and carry loads. Hazards of climbing Everest
        include avalanches, crevasses, frostbite, high-altitude pulmonary and
        cerebral edema, and crowding on summit day. Expeditions usually attempt
        the summit in May, during a brief window of calm weather before the
        monsoon.""",
    ),
    "egyptian_pyramids": _doc(
        """The ancient Egyptian pyramids were monumental royal tombs built during
        the Old and Middle Kingdoms, mostly between about 2700 and 1700 BC. The
        first was the Step Pyramid of King Djoser at Saqqara, designed by his
        architect Imhotep around 2650 BC as a stack of six stone mastabas. Under
        King Sneferu, builders experimented with the Bent Pyramid and then the
        Red Pyramid at Dahshur, the first true smooth-sided pyramid.""",
        """The Great Pyramid of Giza, built for the pharaoh Khufu around 2560 BC,
        originally rose about 146 meters and remained the tallest human-made
        structure for more than three thousand years. It contains an estimated
        2.3 million blocks of limestone and granite. Nearby stand the pyramids of
        Khafre and Menkaure and the Great Sphinx. Casing stones of polished white
        Tura limestone once made the pyramid faces gleam.""",
        """Contrary to legend, the pyramids were not built by slaves but by
        organized crews of paid laborers and skilled craftsmen, who lived in a
        workers' town near Giza. They quarried blocks with copper tools, dragged
        them on sledges over sand wetted with water, and probably raised them on
        ramps. The pyramid shape may have symbolized the rays of the sun or the
        primeval mound of creation. Burial chambers held the pharaoh's mummy and
        grave goods, although almost all pyramids were robbed in antiquity.""",
    ),
    "cheese_making": _doc(
        """Cheese making transforms milk into a concentrated, long-lasting food by
        coagulating its protein and removing much of its water. Most cheeses
        start with pasteurized or raw milk from cows, goats, sheep, or water
        buffalo, to which the cheesemaker adds starter cultures of lactic acid
        bacteria. The bacteria ferment lactose into lactic acid, acidifying the
        milk and shaping the flavor of the cheese.""",
        """Next comes rennet, an enzyme traditionally taken from the stomachs of
        young calves and now often produced by microbes, which causes the casein
        proteins in the milk to coagulate into a firm gel called curd. The
        cheesemaker cuts the curd into pieces to release the liquid whey; smaller
        pieces and more heating, called cooking the curd, expel more whey and give
        harder cheeses such as Parmigiano Reggiano. For cheddar, slabs of curd are
        stacked and restacked in a process called cheddaring.""",
        """The curds are then salted, pressed into molds, and sometimes brined, as
        with feta and Gouda. Finally the cheese is ripened, or aged, in caves or
        cellars with controlled temperature and humidity, where enzymes break
        down proteins and fats to develop flavor and texture. Penicillium
        roqueforti creates the blue veins of Roquefort cheese, Penicillium
        camemberti forms the white rind of Camembert and Brie, and propionic
        bacteria produce the holes in Emmental.""",
    ),
    "tides": _doc(
        """Tides are the regular rise and fall of sea level caused mainly by the
        gravitational pull of the Moon and, to a lesser extent, the Sun. The
        Moon's gravity pulls hardest on the side of Earth facing it and weakest
        on the far side, stretching the oceans into two tidal bulges. As Earth
        rotates through these bulges, most coasts experience two high tides and
        two low tides in a lunar day of about 24 hours and 50 minutes, so high
        tide comes roughly 50 minutes later each day.""",
        """The Sun's tidal effect is a little less than half that of the Moon.
        When the Sun, Moon, and Earth line up at new moon and full moon, their
        pulls combine to produce spring tides with the greatest tidal range; when
        they form a right angle at the quarter moons, the result is weaker neap
        tides. Spring tides have nothing to do with the season of spring.""",
        """The shape of the coastline and the depth of the seafloor strongly
        modify tides. Some places have only one high tide a day, and
        funnel-shaped bays amplify the tidal range: the Bay of Fundy in Canada
        has the largest tides in the world, exceeding 15 meters. In some rivers
        the incoming tide forms a tidal bore, a wave that travels upstream. Tidal
        currents shape estuaries and intertidal habitats, and tidal power
        stations such as La Rance in France generate electricity from the ebb and
        flow of the tides.""",
    ),
    # --- special documents -------------------------------------------------------
    "schwarzwald_de": _doc(
        """Der Schwarzwald ist ein Mittelgebirge im Südwesten Deutschlands, im
        Bundesland Baden-Württemberg. Er erstreckt sich über rund 160 Kilometer
        von Pforzheim im Norden bis zum Hochrhein an der Grenze zur Schweiz im
        Süden. Der höchste Berg ist der Feldberg mit 1493 Metern. Seinen Namen
        verdankt das Gebirge den dichten Nadelwäldern aus Fichten und Tannen, die
        aus der Ferne fast schwarz wirken.""",
        """Im Schwarzwald entspringt die Donau: Ihre Quellflüsse Brigach und Breg
        vereinigen sich bei Donaueschingen. Bekannte Seen sind der Titisee und
        der Schluchsee, und bei Triberg stürzen die Triberger Wasserfälle über
        mehrere Stufen ins Tal. Der Nationalpark Schwarzwald wurde im Jahr 2014
        gegründet.""",
        """Die Region ist berühmt für ihre Traditionen: die Kuckucksuhr, den
        Bollenhut mit seinen roten Wollkugeln, den Schwarzwälder Schinken und die
        Schwarzwälder Kirschtorte mit Kirschwasser. Früher lebten viele Menschen
        von der Holzwirtschaft, der Flößerei, der Glasherstellung und der
        Uhrmacherei. Heute ist der Tourismus wichtig: Wanderer folgen dem
        Westweg von Pforzheim nach Basel, und im Winter locken die Skigebiete
        rund um den Feldberg.""",
    ),
    # Each Japanese paragraph is one source line: _doc() must not insert spaces.
    "sakura_ja": _doc(
        "花見は、春に咲く桜の花を眺めながら季節の訪れを祝う日本の伝統的な習慣です。奈良時代には梅の花を愛でることが多かったとされますが、平安時代になると貴族の間で桜を観賞する宴が広まりました。豊臣秀吉が一五九八年に京都の醍醐寺で催した「醍醐の花見」はとくに有名です。江戸時代には庶民の間にも花見が広がり、上野や隅田川の堤などが桜の名所として親しまれました。",
        "現在、日本で最も多く植えられている桜の品種はソメイヨシノで、江戸時代末期に江戸の染井村の植木職人によって広められたといわれています。ソメイヨシノは葉が出る前に淡い紅色の花を一斉に咲かせ、満開からおよそ一週間で散ってしまいます。気象庁は毎年、各地の標本木を観測して桜の開花日と満開日を発表し、テレビや新聞は桜前線の北上を伝えます。開花は三月下旬ごろに九州や東京などで始まり、五月上旬ごろに北海道に達します。",
        "花見の日には、家族や友人、職場の仲間が公園や川沿いの桜の木の下にシートを広げ、弁当や花見団子を食べたり酒を飲んだりして過ごします。夜にライトアップされた桜を楽しむことは「夜桜」と呼ばれます。人気の名所では、早朝から場所取りをする人の姿も見られます。すぐに散ってしまう桜の花のはかなさは「もののあわれ」の美意識とも結びつき、桜は日本文化の象徴として和歌や俳句、絵画に数多く描かれてきました。",
    ),
    "history_of_computing": _doc(
        """The history of computing stretches from ancient counting aids to the
        networked machines of today. For thousands of years people calculated
        with tally sticks, counting boards, and the abacus, which was used in
        Mesopotamia, Greece, Rome, and China. The Antikythera mechanism, a Greek
        bronze device from around the second century BC, used dozens of
        interlocking gears to predict the positions of the sun and moon and the
        dates of eclipses, and it is often described as the oldest known analog
        computer.""",
        """In the seventeenth century mathematicians began to mechanize
        arithmetic. John Napier published his logarithms in 1614, which led to
        the slide rule, devised by William Oughtred in the 1620s and used by
        engineers for three centuries. Wilhelm Schickard designed a calculating
        clock in 1623, Blaise Pascal built an adding machine, the
        Pascaline, in 1642 to help his father with tax accounts, and Gottfried
        Wilhelm Leibniz created the stepped reckoner, which could also multiply
        and divide. Leibniz studied the binary number system as well, the
        notation of ones and zeros that digital computers would later adopt.""",
        """The idea of controlling a machine with stored instructions came from
        the textile industry. In 1804 Joseph Marie Jacquard built a loom that
        wove complex patterns by reading a chain of punched cards. Charles
        Babbage, an English mathematician, designed the Difference Engine in the
        1820s to compute mathematical tables automatically, and in 1837 he
        described the far more ambitious Analytical Engine. It had a mill for
        arithmetic, a store for numbers, and punched cards for instructions and
        data: the outline of a general-purpose computer. Ada Lovelace, writing
        about the Analytical Engine in 1843, published a method for calculating
        Bernoulli numbers that is often called the first computer program, and
        she foresaw that such machines might one day manipulate symbols and
        even compose music.""",
        """Punched cards entered business through Herman Hollerith, whose
        electric tabulating machines processed the 1890 United States census far
        faster than clerks working by hand. His company became part of the
        Computing-Tabulating-Recording Company in 1911, which was renamed
        International Business Machines, or IBM, in 1924, and punched-card
        equipment handled business records for decades.""",
        """The theoretical foundations arrived in the nineteenth and early
        twentieth centuries. George Boole described an algebra of logic in 1854,
        and in 1937 Claude Shannon showed in his master's thesis that circuits of
        relays and switches could carry out Boolean logic, linking mathematics to
        electrical engineering. In 1936 Alan Turing described an abstract machine
        that reads and writes symbols on an endless tape according to a table of
        rules. His universal machine could imitate any other such machine, and
        his work, together with the lambda calculus of Alonzo Church, defined
        what it means for a function to be computable and proved that some
        problems, such as the halting problem, can never be solved by any
        algorithm.""",
        """The Second World War accelerated the construction of real computers.
        In Berlin, Konrad Zuse completed the Z3 in 1941, an electromechanical
        relay machine that was the first working programmable, fully automatic
        digital computer. In Britain, the engineer Tommy Flowers designed
        Colossus, which used about 1,600 and later 2,400 vacuum tubes to help
        break the German Lorenz teleprinter cipher at Bletchley Park from 1944.
        In the United States, Howard Aiken and IBM built the electromechanical
        Harvard Mark I.""",
        """The ENIAC, completed at the University of Pennsylvania in 1945 by J.
        Presper Eckert and John Mauchly, was the first general-purpose
        electronic digital computer. It contained about 18,000 vacuum tubes,
        weighed some 27 tonnes, and could perform about 5,000 additions per
        second. It was built to calculate artillery firing
        tables for the US Army. ENIAC was set up for each new problem by
        plugging cables and setting switches, work done by a team of women
        programmers including Kathleen McNulty, Jean Jennings, and Betty Snyder;
        reconfiguring it for a new problem could take days.""",
        """The solution was the stored-program computer, which keeps its
        instructions in the same memory as its data. John von Neumann described
        this design in his 1945 First Draft of a Report on the EDVAC, and the
        arrangement of processor, memory, and input and output that he outlined
        is still called the von Neumann architecture. The Manchester Baby
        executed the first stored program on 21 June 1948, and the EDSAC, built
        by Maurice Wilkes at Cambridge, began regular service in 1949. The
        Ferranti Mark 1 and the UNIVAC I, both delivered in 1951, were among the
        first commercial computers; UNIVAC became famous when it correctly
        predicted the outcome of the 1952 American presidential election on
        television.""",
        """The invention of the transistor at Bell Laboratories in 1947 by John
        Bardeen, Walter Brattain, and William Shockley transformed electronics.
        Transistors were smaller, cooler, cheaper, and far more reliable than
        vacuum tubes, and by the late 1950s they had replaced tubes in new
        computers. Magnetic core memory gave machines fast, dependable storage.
        Software advanced just as quickly: Grace Hopper wrote one of the first
        compilers in 1952, John Backus and his team at IBM released FORTRAN for
        scientific computation in 1957, John McCarthy created LISP in 1958, and
        COBOL, shaped by Hopper's ideas, became the language of business data
        processing from 1959.""",
        """In 1958 and 1959 Jack Kilby at Texas Instruments and Robert Noyce at
        Fairchild Semiconductor independently invented the integrated circuit,
        which placed many transistors and their connections on a single chip of
        semiconductor. In 1965 Gordon Moore observed that the number of
        components on a chip was doubling every year, a rate he later revised to
        every two years; this prediction, known as Moore's law, held for about
        half a century. IBM's System/360, announced in 1964, offered a whole
        family of compatible mainframes, and Digital Equipment Corporation's
        PDP-8 made smaller minicomputers affordable for laboratories and
        universities.""",
        """The microprocessor put an entire central processing unit on one chip.
        The Intel 4004, released in 1971 for a Japanese calculator maker, held
        about 2,300 transistors. Its successors powered the Altair 8800 kit of
        1975, for which Bill Gates and Paul Allen wrote a BASIC interpreter
        before founding Microsoft. Steve Jobs and Steve Wozniak founded Apple in
        1976, and the Apple II, the Commodore PET, and the TRS-80 brought
        personal computers into homes and schools in 1977. The IBM Personal
        Computer of 1981, with an Intel processor and Microsoft's MS-DOS
        operating system, set a standard that many other manufacturers cloned.""",
        """Meanwhile the way people interacted with computers changed. In 1968
        Douglas Engelbart demonstrated the computer mouse, hypertext, and shared
        on-screen editing. Researchers at Xerox PARC built the Alto in 1973,
        with windows, icons, a bitmapped display, Ethernet networking, and laser
        printing. Apple's Macintosh brought the graphical user interface to a
        mass market in 1984, and Microsoft Windows later spread it to most
        personal computers. At Bell Labs, Ken Thompson and Dennis Ritchie
        created the Unix operating system in 1969 and the C programming language
        in the early 1970s, and in 1991 Linus Torvalds began the Linux kernel,
        which now underlies much of the world's software infrastructure.""",
        """Computers also learned to talk to each other. The ARPANET, funded by
        the US Department of Defense, sent its first message between the
        University of California, Los Angeles, and the Stanford Research
        Institute in October 1969, using the packet switching ideas of Paul
        Baran and Donald Davies. Ray Tomlinson sent the first network email in
        1971. Vint Cerf and Bob Kahn designed the TCP/IP protocols, which the
        ARPANET adopted on 1 January 1983, creating the foundation of the
        Internet. In 1989 Tim Berners-Lee, working at CERN, proposed the World
        Wide Web, combining hypertext documents, addresses called URLs, and the
        HTTP protocol; graphical browsers such as Mosaic in 1993 made the web
        popular, and search engines soon followed.""",
        """The twenty-first century brought computing into every pocket.
        Smartphones such as the iPhone of 2007 and phones based on Android from
        2008 combined a computer, camera, and network connection in a handheld
        device. Cloud computing services, offered from 2006 by Amazon Web
        Services and later by many others, let organizations rent processing
        power and storage in vast data centers. Graphics processors, first built
        for video games, turned out to be ideal for the parallel arithmetic of
        neural networks, and deep learning systems began to recognize images,
        translate languages, and generate text.""",
        """In less than a century, electronic computers have grown from
        room-sized machines performing a few thousand operations per second to
        supercomputers that exceed a quintillion operations per second and
        phones that outperform the mainframes of the past. As transistors
        approach atomic dimensions and the pace of Moore's law slows, engineers
        are turning to multicore processors, specialized accelerators, and
        entirely new approaches such as quantum computing to keep the progress
        of computing going.""",
    ),
}

# (query text, file the query should retrieve first). Each query's distinctive words
# (sunlight/sugar/plants, volcano/erupt/lava/ash, marathon/training/plan/running)
# appear heavily in the expected document and not, or only in passing, elsewhere.
DEMO_QUERIES: list[tuple[str, str]] = [
    ("how do plants turn sunlight into sugar", "photosynthesis.txt"),
    ("what makes a volcano erupt with lava and ash", "volcano_eruptions.txt"),
    ("training plan for running a marathon", "marathon_training.txt"),
]


def write_corpus(out_dir: str) -> list[str]:
    """Write every document to ``out_dir`` (created if missing; existing files of the
    same names are overwritten). Returns the written paths in a fixed order."""
    os.makedirs(out_dir, exist_ok=True)
    paths: list[str] = []
    for topic, text in CORPUS.items():
        path = os.path.join(out_dir, f"{topic}.txt")
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the embedpipe sample text corpus.")
    parser.add_argument("out_dir", help="directory to write the .txt files into")
    args = parser.parse_args(argv)
    paths = write_corpus(args.out_dir)
    print(f"wrote {len(paths)} files to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
