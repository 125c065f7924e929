package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.pyner.artifact.Golden;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

/** Behaviour of the public API: UTF-16 offsets, batch independence, thread safety, ignore labels. */
class ApiTest {

    static final String EMOJI = "👨‍👩‍👧‍👦 Family trip to New York with Sarah 👋🏽 and Tom 👍🏿! 🇫🇷 Paris";

    @Test
    void utf16OffsetsSliceTheSameTextAsCodePointOffsets() throws Exception {
        try (PynerModel m = PynerModel.builder().setArtifact(TestArtifacts.get("roberta-fp32")).optSelfCheck(false).build()) {
            int checked = 0;
            for (AggregationStrategy s : AggregationStrategy.values()) {
                for (Entity e : m.predict(List.of(EMOJI), s).get(0)) {
                    String byUtf16 = EMOJI.substring(e.startUtf16(), e.endUtf16());
                    int a = EMOJI.offsetByCodePoints(0, e.start());
                    int b = EMOJI.offsetByCodePoints(0, e.end());
                    assertEquals(EMOJI.substring(a, b), byUtf16, e.toString());
                    checked++;
                }
            }
            assertTrue(checked > 0, "no entities to check");
        }
    }

    @Test
    void resultsDoNotDependOnOrderOrBatchSizeOrThreads() throws Exception {
        List<String> texts = Golden.read(TestArtifacts.get("bert-fp32")).texts();
        try (PynerModel m = PynerModel.builder().setArtifact(TestArtifacts.get("bert-fp32")).optSelfCheck(false).build();
             PynerModel small = PynerModel.builder().setArtifact(TestArtifacts.get("bert-fp32")).optSelfCheck(false)
                     .optMaxBatchSize(3).optMaxBatchTokens(100).optThreads(1).build()) {
            List<List<Entity>> all = m.predict(texts, AggregationStrategy.FIRST);
            List<List<Entity>> batched = small.predict(texts, AggregationStrategy.FIRST);
            List<String> reversed = new ArrayList<>(texts);
            java.util.Collections.reverse(reversed);
            List<List<Entity>> rev = m.predict(reversed, AggregationStrategy.FIRST);
            for (int i = 0; i < texts.size(); i++) {
                assertSameEntities(all.get(i), batched.get(i), 1e-5);
                assertSameEntities(all.get(i), rev.get(texts.size() - 1 - i), 1e-5);
            }
        }
    }

    @Test
    void concurrentPredictionsEqualSequentialOnes() throws Exception {
        List<String> texts = Golden.read(TestArtifacts.get("xlm-roberta-fp32")).texts();
        try (PynerModel m = PynerModel.builder().setArtifact(TestArtifacts.get("xlm-roberta-fp32")).optSelfCheck(false).build()) {
            List<List<Entity>> want = m.predict(texts, AggregationStrategy.AVERAGE);
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<List<List<Entity>>>> futures = new ArrayList<>();
                for (int i = 0; i < 8; i++) {
                    futures.add(pool.submit(() -> m.predict(texts, AggregationStrategy.AVERAGE)));
                }
                for (Future<List<List<Entity>>> f : futures) {
                    assertEquals(want, f.get());
                }
            } finally {
                pool.shutdown();
            }
        }
    }

    @Test
    void ignoreLabelsDropsGroupsAfterGrouping() throws Exception {
        try (PynerModel m = PynerModel.builder().setArtifact(TestArtifacts.get("bert-fp32")).optSelfCheck(false).build()) {
            String text = "Angela Merkel met Emmanuel Macron in Berlin on Tuesday.";
            List<Entity> everything = m.predict(List.of(text), AggregationStrategy.SIMPLE, List.of()).get(0);
            List<Entity> defaults = m.predict(List.of(text), AggregationStrategy.SIMPLE).get(0);
            assertTrue(everything.stream().anyMatch(e -> e.label().equals("O")), "with no ignore labels, O groups stay");
            assertFalse(defaults.stream().anyMatch(e -> e.label().equals("O")));
            List<Entity> withoutO = new ArrayList<>(everything);
            withoutO.removeIf(e -> e.label().equals("O"));
            assertEquals(withoutO, defaults);
        }
    }

    @Test
    void theLibraryVersionIsThePomsAndTheJarsManifests() throws Exception {
        // The pom is the one place the version is written; the build filters it into version.properties.
        var pom = javax.xml.parsers.DocumentBuilderFactory.newInstance().newDocumentBuilder()
                .parse(java.nio.file.Path.of("pom.xml").toFile());
        String version = null;
        var children = pom.getDocumentElement().getChildNodes();
        for (int i = 0; i < children.getLength(); i++) {
            if ("version".equals(children.item(i).getNodeName())) {
                version = children.item(i).getTextContent().trim();
            }
        }
        assertTrue(version != null && !version.isEmpty());
        assertEquals(version, PynerModel.version());
        try (PynerModel m = PynerModel.builder().setArtifact(TestArtifacts.get("bert-fp32")).optSelfCheck(false).build()) {
            String json = dev.pyner.bridge.PythonBridge.versions(m);
            assertTrue(json.contains("\"pyner_jvm\":\"" + version + "\""), json);
        }
    }

    /** Same entities through the one comparison: kind, label, start, end, word, index identical; scores within tol. */
    static void assertSameEntities(List<Entity> expected, List<Entity> actual, double tol) {
        Comparison c = new Comparison(tol);
        c.entities("entities", actual, Comparison.toJson(expected));
        assertTrue(c.ok(), String.join("\n", c.differences()));
    }
}
