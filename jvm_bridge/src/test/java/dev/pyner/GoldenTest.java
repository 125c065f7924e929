package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.pyner.artifact.Golden;
import java.nio.file.Path;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every generated artifact's golden fixtures (computed by the Python runtime at packaging time)
 * are reproduced by the JVM: token ids, type ids, offsets, special masks and labels identical,
 * scores within the manifest tolerance, entities of every strategy identical.
 */
class GoldenTest {

    static Stream<Path> artifacts() {
        return TestArtifacts.all().stream();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("artifacts")
    void reproducesGoldenFixtures(Path artifact) throws Exception {
        try (PynerModel model = PynerModel.builder().setArtifact(artifact).optSelfCheck(false).optThreads(1).build()) {
            Comparison r = model.selfCheck();
            assertTrue(r.ok(), artifact.getFileName() + ": " + r.summary() + "\n  " + String.join("\n  ", r.differences()));
            assertTrue(r.cases() >= 30, "golden set has " + r.cases() + " cases");
            assertTrue(r.tokens() > 0 && r.entities() > 0, r.summary());
            // Same ONNX Runtime as the packaging Python (1.29.0) and the same batches: bit-identical scores.
            assertEquals(model.manifest().onnxRuntimeVersion(), model.onnxRuntimeVersion(),
                    "the artifact was packaged with another ONNX Runtime than the JVM uses");
            assertEquals(0.0, r.maxScoreDiff(), artifact.getFileName() + ": " + r.summary());
            // The long document needs several windows at max_length 32: the merge path is exercised.
            Golden golden = Golden.read(artifact);
            int longCase = golden.ids().indexOf("long-01");
            List<ScoredText> scored = model.score(List.of(golden.texts().get(longCase)));
            assertTrue(scored.get(0).windows().size() > 3, "long-01 has " + scored.get(0).windows().size() + " windows");
        }
    }
}
