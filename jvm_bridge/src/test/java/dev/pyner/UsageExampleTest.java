package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.inference.Predictor;
import ai.djl.modality.nlp.translator.NamedEntity;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.DeferredTranslatorFactory;
import dev.pyner.djl.PynerTranslatorFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.List;
import org.junit.jupiter.api.Test;

/** The snippets of docs/jvm.md, cut from here (between START and END), so the docs run. */
class UsageExampleTest {

    @Test
    void inProcess() throws Exception {
        Path artifactDir = TestArtifacts.get("bert-fp32");
        // START java-in-process
        try (PynerModel model = PynerModel.builder()
                .setArtifact(artifactDir)           // the folder made by `pyner package`
                .optThreads(2)                      // ONNX Runtime intra-op threads (0 = its choice)
                .build()) {                         // checks checksums and re-runs the golden fixtures
            List<String> texts = List.of("Angela Merkel met Emmanuel Macron in Berlin 🇩🇪.", "No entities here?");
            List<List<Entity>> entities = model.predict(texts, AggregationStrategy.FIRST);
            for (Entity e : entities.get(0)) {
                String surface = texts.get(0).substring(e.startUtf16(), e.endUtf16()); // not e.start()/e.end()
                System.out.println(e.label() + " " + e.score() + " '" + e.word() + "' " + surface);
            }
        }
        // END java-in-process
    }

    @Test
    void plainDjl() throws Exception {
        Path artifactDir = TestArtifacts.get("bert-fp32");
        // START java-plain-djl
        Criteria<String, NamedEntity[]> criteria = Criteria.builder()
                .setTypes(String.class, NamedEntity[].class)
                .optModelPath(artifactDir)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new DeferredTranslatorFactory()) // the factory named in serving.properties
                .optArgument("aggregation_strategy", "simple")
                .build();
        try (ZooModel<String, NamedEntity[]> model = criteria.loadModel();
             Predictor<String, NamedEntity[]> predictor = model.newPredictor()) {
            NamedEntity[] entities = predictor.predict("Angela Merkel met Emmanuel Macron in Berlin.");
            System.out.println(Arrays.toString(entities));
        }
        // END java-plain-djl
    }

    /** docs/jvm.md shows these snippets verbatim (lines between START and END, indentation removed). */
    @Test
    void docsShowTheseSnippets() throws Exception {
        String doc = Files.readString(Paths.get("..", "docs", "jvm.md"), StandardCharsets.UTF_8);
        List<String> src = Files.readAllLines(Paths.get("src/test/java/dev/pyner/UsageExampleTest.java"), StandardCharsets.UTF_8);
        for (String name : List.of("java-in-process", "java-djl", "java-plain-djl")) {
            int a = src.indexOf(src.stream().filter(l -> l.trim().equals("// START " + name)).findFirst().orElseThrow());
            int b = src.indexOf(src.stream().filter(l -> l.trim().equals("// END " + name)).findFirst().orElseThrow());
            List<String> lines = src.subList(a + 1, b);
            int indent = lines.stream().filter(l -> !l.isBlank()).mapToInt(l -> l.length() - l.stripLeading().length()).min().orElse(0);
            StringBuilder snippet = new StringBuilder();
            for (String l : lines) {
                snippet.append(l.length() >= indent ? l.substring(indent) : l.strip()).append('\n');
            }
            assertTrue(doc.contains("```java\n" + snippet + "```"), "docs/jvm.md does not show snippet " + name + ":\n" + snippet);
        }
    }

    @Test
    void djlCriteria() throws Exception {
        Path artifactDir = TestArtifacts.get("bert-fp32");
        // START java-djl
        Criteria<String, Entity[]> criteria = Criteria.builder()
                .setTypes(String.class, Entity[].class)
                .optModelPath(artifactDir)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new PynerTranslatorFactory())
                .optArgument("aggregation", "simple")
                .build();
        try (ZooModel<String, Entity[]> model = criteria.loadModel();
             Predictor<String, Entity[]> predictor = model.newPredictor()) {
            Entity[] entities = predictor.predict("Angela Merkel met Emmanuel Macron in Berlin.");
            System.out.println(Arrays.toString(entities));
        }
        // END java-djl
        try (ZooModel<String, Entity[]> model = criteria.loadModel();
             Predictor<String, Entity[]> predictor = model.newPredictor();
             PynerModel m = PynerModel.builder().setArtifact(artifactDir).optSelfCheck(false).build()) {
            List<Entity> want = m.predict("Angela Merkel met Emmanuel Macron in Berlin.", AggregationStrategy.SIMPLE);
            assertFalse(want.isEmpty());
            assertEquals(want, Arrays.asList(predictor.predict("Angela Merkel met Emmanuel Macron in Berlin.")));
        }
    }
}
