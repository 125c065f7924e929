package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.inference.Predictor;
import ai.djl.modality.nlp.translator.NamedEntity;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.DeferredTranslatorFactory;
import dev.pyner.artifact.Golden;
import dev.pyner.artifact.Manifest;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Artifacts whose weights are ONNX external data ({@code model.onnx.data} beside {@code
 * model.onnx}, listed in the manifest; tests/make_test_artifacts.py packages one fp32 and one int8
 * per family with {@code --external-data always}) load and agree on every JVM path: PynerModel
 * (checksums and golden self-check), PynerTranslatorFactory, and plain DJL through serving.properties.
 * ONNX Runtime finds the data file only because every path loads model.onnx by its path.
 */
class ExternalDataTest {

    static Stream<Path> artifacts() {
        return TestArtifacts.external().stream();
    }

    @Test
    void everyFamilyHasExternalDataArtifactsInFp32AndInt8() {
        List<String> names = TestArtifacts.external().stream().map(p -> p.getFileName().toString()).toList();
        for (Path single : TestArtifacts.long64()) {
            String family = single.getFileName().toString().replace("-fp32-L64", "");
            assertTrue(names.contains(family + "-fp32-ext") && names.contains(family + "-int8-ext"), family + ": " + names);
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("artifacts")
    void pynerModelChecksAndReproducesTheGoldenFixtures(Path artifact) throws Exception {
        Manifest manifest = Manifest.read(artifact);
        assertEquals("model.onnx.data", manifest.raw().get("external_data").getAsString());
        assertTrue(manifest.files().contains("model.onnx.data"), manifest.files().toString());
        // The graph's initializers point at the data file (its name is stored as each tensor's "location").
        assertTrue(new String(Files.readAllBytes(artifact.resolve("model.onnx")), java.nio.charset.StandardCharsets.ISO_8859_1)
                .contains("model.onnx.data"), "model.onnx does not reference model.onnx.data");
        try (PynerModel model = PynerModel.builder().setArtifact(artifact).optThreads(1).build()) { // checksums + self-check
            Comparison r = model.selfCheck();
            assertTrue(r.ok(), r.summary() + "\n  " + String.join("\n  ", r.differences()));
            assertTrue(r.entities() > 0 && r.tokens() > 0, r.summary());
            assertEquals(0.0, r.maxScoreDiff(), "same ONNX Runtime, same batches: bit-identical scores; " + r.summary());
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("artifacts")
    void theDjlTranslatorFactoryAgrees(Path artifact) throws Exception {
        Golden golden = Golden.read(artifact);
        boolean int8 = artifact.getFileName().toString().contains("-int8");
        try (PynerModel oracle = PynerTranslatorTest.oneBatchOracle(artifact);
             ZooModel<String, Entity[]> zoo = PynerTranslatorTest.criteria(artifact, "first").loadModel();
             Predictor<String, Entity[]> predictor = zoo.newPredictor()) {
            List<Entity[]> got = predictor.batchPredict(golden.texts());
            List<List<Entity>> want = oracle.predict(golden.texts(), AggregationStrategy.FIRST);
            Comparison cmp = new Comparison(int8 ? 0.0 : oracle.manifest().scoreTolerance());
            for (int i = 0; i < got.size(); i++) {
                cmp.entities(golden.ids().get(i), Arrays.asList(got.get(i)),
                        int8 ? Comparison.toJson(want.get(i)) : golden.cases().get(i).entities("first"));
            }
            assertTrue(cmp.ok(), String.join("\n", cmp.differences()));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("artifacts")
    void plainDjlLoadsItThroughServingProperties(Path artifact) throws Exception {
        Criteria<String, NamedEntity[]> criteria = Criteria.builder()
                .setTypes(String.class, NamedEntity[].class)
                .optModelPath(artifact)
                .optEngine("OnnxRuntime")
                .optTranslatorFactory(new DeferredTranslatorFactory())
                .optArgument("aggregation_strategy", "none")
                .build();
        Golden golden = Golden.read(artifact);
        boolean int8 = artifact.getFileName().toString().contains("-int8");
        Comparison cmp = new Comparison(1.0); // labels and spans only: DJL's own decoding is measured in DjlPlainTest
        int compared = 0;
        try (ZooModel<String, NamedEntity[]> model = criteria.loadModel();
             Predictor<String, NamedEntity[]> predictor = model.newPredictor();
             PynerModel alone = PynerTranslatorTest.oneBatchOracle(artifact)) {
            for (Golden.Case c : golden.cases()) {
                if (c.windows().size() > 1) {
                    continue; // DJL truncates at maxLength
                }
                // int8: DJL runs the text alone, so its oracle is the text alone (see PynerTranslatorTest)
                cmp.entities(c.id(), DjlPlainTest.json(predictor.predict(c.text()), AggregationStrategy.NONE),
                        int8 ? Comparison.toJson(alone.predict(c.text(), AggregationStrategy.NONE)) : c.entities("none"));
                compared++;
            }
        }
        assertTrue(compared > 0, "no single-window texts");
        assertTrue(Collections.disjoint(cmp.kinds(), DjlPlainTest.SPAN),
                "plain DJL's per-token labels/spans differ: " + cmp.differences());
        assertFalse(cmp.entities() == 0);
    }
}
