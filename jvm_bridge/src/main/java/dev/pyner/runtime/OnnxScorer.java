package dev.pyner.runtime;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import dev.pyner.PynerException;
import dev.pyner.PynerInferenceException;
import dev.pyner.TokenWindow;
import java.nio.LongBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * An ONNX Runtime Java session over {@code model.onnx}, with the Python runtime's session options
 * (graph optimization ALL, sequential execution, intra-op threads as asked (0 = ORT's choice),
 * one inter-op thread). Runs windows in length-bucketed batches and returns per-window float32
 * {@code scores}. Thread-safe (ORT sessions may run concurrently).
 */
public final class OnnxScorer implements AutoCloseable {

    /** The graph output holding softmax probabilities. */
    public static final String SCORES = "scores";

    private final OrtEnvironment env;
    private final OrtSession session;
    private final boolean usesTypes;
    private final long padId;
    private final int numLabels;

    private OnnxScorer(OrtEnvironment env, OrtSession session, List<String> inputNames, long padId, int numLabels) {
        this.env = env;
        this.session = session;
        this.usesTypes = inputNames.contains("token_type_ids");
        this.padId = padId;
        this.numLabels = numLabels;
    }

    /**
     * Opens a session.
     *
     * @param model model.onnx
     * @param manifestInputs the manifest's input names (must equal the graph's)
     * @param padId padding token id
     * @param numLabels number of labels (checked against the scores output)
     * @param threads intra-op threads (0: ORT's choice)
     * @return the scorer
     * @throws PynerException naming model.onnx when ORT cannot load it or it does not match the manifest
     */
    public static OnnxScorer open(Path model, List<String> manifestInputs, long padId, int numLabels, int threads)
            throws PynerException {
        OrtEnvironment env = environment();
        OrtSession session = null;
        try (OrtSession.SessionOptions so = new OrtSession.SessionOptions()) {
            so.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
            so.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
            so.setIntraOpNumThreads(threads);
            so.setInterOpNumThreads(1);
            so.addConfigEntry("session.intra_op.allow_spinning", "0"); // as Python: idle threads sleep (bench/)
            so.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
            session = env.createSession(model.toString(), so);
            Set<String> graphInputs = new HashSet<>(session.getInputNames());
            if (!graphInputs.equals(new HashSet<>(manifestInputs))) {
                throw new PynerException(model, "graph inputs " + session.getInputNames()
                        + " differ from the manifest's " + manifestInputs);
            }
            Map<String, NodeInfo> outputs = session.getOutputInfo();
            if (!outputs.containsKey(SCORES)) {
                throw new PynerException(model, "graph has no '" + SCORES + "' output (outputs: " + outputs.keySet() + ")");
            }
            if (outputs.get(SCORES).getInfo() instanceof TensorInfo) {
                long[] shape = ((TensorInfo) outputs.get(SCORES).getInfo()).getShape();
                if (shape.length == 3 && shape[2] > 0 && shape[2] != numLabels) {
                    throw new PynerException(model, "'scores' has " + shape[2] + " classes, the manifest lists "
                            + numLabels + " labels");
                }
            }
            return new OnnxScorer(env, session, List.copyOf(manifestInputs), padId, numLabels);
        } catch (OrtException e) {
            closeQuietly(session);
            throw new PynerException(model, "ONNX Runtime cannot load it (" + e.getMessage() + ")", e);
        } catch (PynerException e) {
            closeQuietly(session);
            throw e;
        }
    }

    /**
     * The process's one ONNX Runtime environment. DJL's OnnxRuntime engine insists on creating it
     * (with thread-pool options) and fails if it already exists, so let DJL create it first when
     * DJL's engine is present; sessions keep their own threads (set per session below).
     */
    static synchronized OrtEnvironment environment() {
        try {
            ai.djl.engine.Engine.getEngine("OnnxRuntime");
        } catch (RuntimeException | LinkageError e) {
            // DJL's engine is absent or unusable: ONNX Runtime's default environment serves alone.
        }
        return OrtEnvironment.getEnvironment();
    }

    private static void closeQuietly(OrtSession s) {
        if (s != null) {
            try {
                s.close();
            } catch (OrtException ignored) {
                // closing after a failed load
            }
        }
    }

    /** @return ONNX Runtime's version, as the native library reports it */
    public String onnxRuntimeVersion() {
        return env.getVersion();
    }

    /**
     * Runs windows in batches and returns per window its float32 scores {@code [tokens][labels]},
     * in input order.
     *
     * @param windows windows
     * @param batchSize maximum windows per batch
     * @param maxBatchTokens maximum padded tokens per batch
     * @param maxPadding maximum padding as a fraction of a batch's real tokens (infinity: no bound)
     * @return scores per window
     */
    public List<float[][]> forward(List<TokenWindow> windows, int batchSize, int maxBatchTokens, double maxPadding) {
        int[] lengths = new int[windows.size()];
        for (int i = 0; i < lengths.length; i++) {
            lengths[i] = windows.get(i).length();
        }
        float[][][] results = new float[windows.size()][][];
        for (int[] batch : Batches.plan(lengths, batchSize, maxBatchTokens, maxPadding)) {
            List<TokenWindow> ws = new ArrayList<>(batch.length);
            for (int i : batch) {
                ws.add(windows.get(i));
            }
            float[][][] out = run(ws);
            for (int r = 0; r < batch.length; r++) {
                results[batch[r]] = out[r];
            }
        }
        List<float[][]> list = new ArrayList<>(results.length);
        Collections.addAll(list, results);
        return list;
    }

    /** One padded batch through the session; returns per row its unpadded scores. */
    private float[][][] run(List<TokenWindow> windows) {
        Batches.Padded batch = Batches.Padded.of(windows, padId);
        int n = batch.rows();
        int longest = batch.longest();
        long[] shape = {n, longest};
        Map<String, OnnxTensor> feeds = new HashMap<>();
        try {
            feeds.put("input_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(batch.ids()), shape));
            feeds.put("attention_mask", OnnxTensor.createTensor(env, LongBuffer.wrap(batch.mask()), shape));
            if (usesTypes) {
                feeds.put("token_type_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(batch.types()), shape));
            }
            try (OrtSession.Result result = session.run(feeds, Set.of(SCORES))) {
                OnnxValue v = result.get(0);
                if (!(v instanceof OnnxTensor)) {
                    throw new PynerInferenceException("'scores' is not a tensor");
                }
                OnnxTensor t = (OnnxTensor) v;
                long[] s = t.getInfo().getShape();
                if (s.length != 3 || s[0] != n || s[1] != longest || s[2] != numLabels) {
                    throw new PynerInferenceException("'scores' has shape " + java.util.Arrays.toString(s)
                            + ", expected [" + n + ", " + longest + ", " + numLabels + "]");
                }
                return batch.unpad(t.getFloatBuffer(), windows, numLabels);
            }
        } catch (OrtException e) {
            throw new PynerInferenceException("ONNX Runtime failed on a batch of " + n + " windows x " + longest
                    + " tokens: " + e.getMessage(), e);
        } finally {
            for (OnnxTensor t : feeds.values()) {
                t.close();
            }
        }
    }

    @Override
    public void close() {
        try {
            session.close();
        } catch (OrtException e) {
            throw new PynerInferenceException("closing the ONNX Runtime session failed", e);
        }
    }
}
