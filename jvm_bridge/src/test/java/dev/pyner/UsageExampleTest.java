package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;

import ai.djl.inference.Predictor;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import dev.pyner.djl.PynerTranslatorFactory;
import java.nio.file.Path;
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
            // END java-djl
            try (PynerModel m = PynerModel.builder().setArtifact(artifactDir).optSelfCheck(false).build()) {
                List<Entity> want = m.predict("Angela Merkel met Emmanuel Macron in Berlin.", AggregationStrategy.SIMPLE);
                assertFalse(want.isEmpty());
                assertEquals(want, Arrays.asList(entities));
            }
        }
    }
}
