package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.Device;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.inference.Predictor;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtProvider;
import dev.pyner.artifact.Golden;
import dev.pyner.djl.PynerTranslatorFactory;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import org.junit.jupiter.api.Test;

/**
 * The CUDA device policy, on a machine without a GPU: FAIL names what is missing, FALLBACK runs on
 * the CPU with exactly one warning and the CPU's results bit for bit. With the CPU build of ONNX
 * Runtime Java (the default) what is missing is the GPU build; with {@code -P gpu} on a machine
 * without CUDA it is the CUDA libraries (or the device).
 */
class GpuPolicyTest {

    private static final boolean GPU_BUILD = OrtEnvironment.getAvailableProviders().contains(OrtProvider.CUDA);

    /** What the FAIL message must name on this class path. */
    private static void assertNamesWhatIsMissing(String message) {
        assertTrue(message.contains("cuda:0"), message);
        if (!GPU_BUILD) {
            assertTrue(message.contains("is not the GPU build (com.microsoft.onnxruntime:onnxruntime_gpu)"), message);
            assertTrue(message.contains("[CPU]"), message); // the providers this build has
        } else {
            assertTrue(message.contains("CUDA"), message);
        }
    }

    /** Records the warnings of logger dev.pyner while {@code body} runs. */
    private static List<LogRecord> warnings(ThrowingRunnable body) throws Exception {
        Logger log = Logger.getLogger("dev.pyner");
        List<LogRecord> records = new ArrayList<>();
        Handler h = new Handler() {
            @Override
            public void publish(LogRecord r) {
                if (r.getLevel().intValue() >= Level.WARNING.intValue()) {
                    synchronized (records) {
                        records.add(r);
                    }
                }
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        log.addHandler(h);
        try {
            body.run();
        } finally {
            log.removeHandler(h);
        }
        return records;
    }

    interface ThrowingRunnable {
        void run() throws Exception;
    }

    @Test
    void failNamesTheMissingGpuBuildOrCudaLibraries() {
        Path art = TestArtifacts.get("bert-fp32");
        PynerException e = assertThrows(PynerException.class,
                () -> PynerModel.builder().setArtifact(art).optDevice("cuda:0").build().close());
        assertNamesWhatIsMissing(e.getMessage());
        assertTrue(e.getMessage().startsWith(art.resolve("model.onnx").toAbsolutePath().normalize().toString()), e.getMessage());
        // FAIL is the default policy, as in Python.
        PynerException again = assertThrows(PynerException.class, () -> PynerModel.builder().setArtifact(art)
                .optDevice("cuda").optOnMissingGpu(OnMissingGpu.FAIL).build().close());
        assertEquals(e.getMessage(), again.getMessage());
    }

    @Test
    void fallbackWarnsOnceAndGivesTheCpusScoresBitForBit() throws Exception {
        Path art = TestArtifacts.get("bert-fp32");
        List<String> texts = Golden.read(art).texts();
        List<ScoredText> cpu;
        try (PynerModel m = PynerModel.builder().setArtifact(art).optThreads(1).build()) {
            assertEquals("cpu", m.device());
            assertNull(m.fallbackReason());
            cpu = m.score(texts);
        }
        List<List<ScoredText>> fallback = new ArrayList<>();
        List<String> reasons = new ArrayList<>();
        List<LogRecord> logged = warnings(() -> {
            try (PynerModel m = PynerModel.builder().setArtifact(art).optThreads(1).optDevice("cuda:0")
                    .optOnMissingGpu(OnMissingGpu.FALLBACK).build()) { // the golden self-check runs too
                assertEquals("cpu", m.device());
                reasons.add(m.fallbackReason());
                fallback.add(m.score(texts));
                fallback.add(m.score(texts)); // predicting logs nothing more
            }
        });
        assertEquals(1, logged.size(), "one warning per load: " + logged.stream().map(LogRecord::getMessage).toList());
        String warning = logged.get(0).getMessage();
        assertNamesWhatIsMissing(warning);
        assertTrue(warning.endsWith("running on the CPU instead (on_missing_gpu=fallback)"), warning);
        assertTrue(warning.startsWith(reasons.get(0)), warning);
        for (List<ScoredText> run : fallback) {
            assertEquals(cpu.size(), run.size());
            for (int i = 0; i < cpu.size(); i++) {
                for (int w = 0; w < cpu.get(i).scores().size(); w++) {
                    float[][] a = cpu.get(i).scores().get(w);
                    float[][] b = run.get(i).scores().get(w);
                    for (int t = 0; t < a.length; t++) {
                        assertArrayEquals(a[t], b[t], 0.0f, "text " + i + " window " + w + " token " + t);
                    }
                }
            }
        }
    }

    @Test
    void devicesAndPoliciesAreCheckedByName() {
        IllegalArgumentException bad = assertThrows(IllegalArgumentException.class, () -> PynerModel.builder().optDevice("gpu0"));
        assertEquals("device 'gpu0': use cpu, cuda or cuda:N (N a device id, 0 first)", bad.getMessage());
        assertThrows(IllegalArgumentException.class, () -> PynerModel.builder().optDevice("cuda:-1"));
        assertThrows(IllegalArgumentException.class, () -> PynerModel.builder().optDevice("cuda:"));
        PynerModel.builder().optDevice("CPU").optDevice("cuda").optDevice("cuda:3"); // accepted
        IllegalArgumentException policy = assertThrows(IllegalArgumentException.class, () -> OnMissingGpu.fromName("maybe"));
        assertTrue(policy.getMessage().startsWith("on_missing_gpu 'maybe': use fail"), policy.getMessage());
        assertEquals(OnMissingGpu.FALLBACK, OnMissingGpu.fromName("Fallback"));
        assertEquals("fail", OnMissingGpu.FAIL.wireName());
    }

    @Test
    void translatorFactoryPassesTheChoiceThrough() throws Exception {
        Path art = TestArtifacts.get("bert-fp32");
        String text = Golden.read(art).texts().get(0);
        // The Criteria's device, picked by the helper: FAIL throws naming what is missing.
        IllegalStateException e = assertThrows(IllegalStateException.class,
                () -> PynerTranslatorFactory.device("cuda:0", OnMissingGpu.FAIL));
        assertNamesWhatIsMissing(e.getMessage());
        assertEquals(Device.cpu(), PynerTranslatorFactory.device("cpu", OnMissingGpu.FAIL));
        // FALLBACK: the CPU, one warning; the arguments device/on_missing_gpu accept the fallen-back model
        // without a second warning... (they warn once about a model not on the asked device).
        Entity[] reference;
        try (ZooModel<String, Entity[]> model = PynerTranslatorTest.criteria(art, "simple").loadModel();
             Predictor<String, Entity[]> p = model.newPredictor()) {
            reference = p.predict(text);
        }
        Device[] picked = new Device[1];
        List<LogRecord> pickLog = warnings(() -> picked[0] = PynerTranslatorFactory.device("cuda:0", OnMissingGpu.FALLBACK));
        assertEquals(Device.cpu(), picked[0]);
        assertEquals(1, pickLog.size());
        assertNamesWhatIsMissing(pickLog.get(0).getMessage());
        // The arguments: a model DJL loaded on the CPU while cuda:0 is asked for is refused (FAIL) ...
        Criteria<String, Entity[]> failing = Criteria.builder().setTypes(String.class, Entity[].class)
                .optModelPath(art).optEngine("OnnxRuntime").optDevice(picked[0])
                .optTranslatorFactory(new PynerTranslatorFactory())
                .optArgument("device", "cuda:0").build();
        Exception refused = assertThrows(Exception.class, () -> failing.loadModel().close());
        String chain = causes(refused);
        assertTrue(chain.contains("cuda:0"), chain);
        // ... or, with fallback, warned about once and run on the CPU with the CPU's entities.
        Criteria<String, Entity[]> falling = Criteria.builder().setTypes(String.class, Entity[].class)
                .optModelPath(art).optEngine("OnnxRuntime").optDevice(picked[0])
                .optTranslatorFactory(new PynerTranslatorFactory())
                .optArgument("device", "cuda:0").optArgument("on_missing_gpu", "fallback").build();
        Entity[][] got = new Entity[1][];
        List<LogRecord> loadLog = warnings(() -> {
            try (ZooModel<String, Entity[]> model = falling.loadModel(); Predictor<String, Entity[]> p = model.newPredictor()) {
                got[0] = p.predict(text);
            }
        });
        assertEquals(1, loadLog.size(), loadLog.stream().map(LogRecord::getMessage).toList().toString());
        assertTrue(loadLog.get(0).getMessage().contains("on_missing_gpu=fallback"), loadLog.get(0).getMessage());
        assertEquals(Arrays.asList(reference), Arrays.asList(got[0]));
        // Bad arguments name themselves.
        Criteria<String, Entity[]> bad = Criteria.builder().setTypes(String.class, Entity[].class)
                .optModelPath(art).optEngine("OnnxRuntime").optTranslatorFactory(new PynerTranslatorFactory())
                .optArgument("device", "tpu").build();
        assertTrue(causes(assertThrows(Exception.class, () -> bad.loadModel().close())).contains("device 'tpu'"));
    }

    private static String causes(Throwable t) {
        StringBuilder b = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause()) {
            b.append(c).append(" <- ");
        }
        return b.toString();
    }
}
