package dev.pyner.runtime;

import ai.onnxruntime.NodeInfo;
import ai.onnxruntime.OnnxTensor;
import ai.onnxruntime.OnnxValue;
import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtException;
import ai.onnxruntime.OrtLoggingLevel;
import ai.onnxruntime.OrtSession;
import ai.onnxruntime.TensorInfo;
import ai.onnxruntime.providers.OrtCUDAProviderOptions;
import dev.pyner.OnMissingGpu;
import dev.pyner.PynerException;
import dev.pyner.PynerInferenceException;
import dev.pyner.Task;
import dev.pyner.TokenWindow;
import java.nio.LongBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * An ONNX Runtime Java session over {@code model.onnx}, with the Python runtime's session options
 * (graph optimization ALL, sequential execution, intra-op threads as asked (0 = ORT's choice),
 * one inter-op thread). Runs windows in length-bucketed batches and returns per-window float32
 * {@code scores} (token classification, {@link #forward}) or per-window rows of per-text outputs
 * (text classification's {@code logits}/{@code scores}, feature extraction's {@code embeddings},
 * {@link #forwardRows}). Thread-safe (ORT sessions may run concurrently).
 */
public final class OnnxScorer implements AutoCloseable {

    /** The graph output holding softmax probabilities (token classification) or class scores (text classification). */
    public static final String SCORES = "scores";
    /** Text classification's graph output holding the logits, {@code [batch, num_labels]}. */
    public static final String LOGITS = "logits";
    /** Feature extraction's graph output holding the pooled (and normalized) embeddings, {@code [batch, dim]}. */
    public static final String EMBEDDINGS = "embeddings";

    private final OrtEnvironment env;
    private final OrtSession session;
    private final boolean usesTypes;
    private final long padId;
    private final int numLabels;
    private final String device;
    private final String fallbackReason;

    private OnnxScorer(OrtEnvironment env, OrtSession session, List<String> inputNames, long padId, int numLabels,
                       String device, String fallbackReason) {
        this.device = device;
        this.fallbackReason = fallbackReason;
        this.env = env;
        this.session = session;
        this.usesTypes = inputNames.contains("token_type_ids");
        this.padId = padId;
        this.numLabels = numLabels;
    }

    /**
     * Opens a session on the CPU.
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
        return open(model, manifestInputs, padId, numLabels, threads, -1, OnMissingGpu.FAIL);
    }

    /**
     * Opens a session on the CPU or a CUDA device. For CUDA it checks, in this order, that this ONNX
     * Runtime Java is the GPU build, that its CUDA provider loads (the CUDA libraries), and that a
     * session can be created on the device; on the first that fails, {@code FAIL} throws naming it and
     * {@code FALLBACK} logs one warning (logger {@code dev.pyner}) and opens on the CPU.
     *
     * @param model model.onnx
     * @param manifestInputs the manifest's input names (must equal the graph's)
     * @param padId padding token id
     * @param numLabels number of labels (checked against the scores output)
     * @param threads intra-op threads (0: ORT's choice)
     * @param cudaId the CUDA device id, or -1 for the CPU
     * @param onMissingGpu what a CUDA device that cannot be used does
     * @return the scorer ({@link #device()} says where it runs)
     * @throws PynerException naming model.onnx when ORT cannot load it or it does not match the
     *     manifest, or (FAIL) what the CUDA device is missing
     */
    public static OnnxScorer open(Path model, List<String> manifestInputs, long padId, int numLabels, int threads,
                                  int cudaId, OnMissingGpu onMissingGpu) throws PynerException {
        return open(model, Task.TOKEN_CLASSIFICATION, manifestInputs, padId, numLabels, threads, cudaId, onMissingGpu);
    }

    /**
     * Opens a session for an artifact of {@code task} (see {@link #open(Path, List, long, int, int, int,
     * OnMissingGpu)}), checking the graph has the task's outputs (docs/tasks.md): token classification
     * {@code scores [batch, sequence, width]}; text classification {@code logits} and {@code scores}
     * {@code [batch, width]}; feature extraction {@code embeddings [batch, width]}.
     *
     * @param model model.onnx
     * @param task the artifact's task
     * @param manifestInputs the manifest's input names (must equal the graph's)
     * @param padId padding token id
     * @param width labels (token and text classification) or the embedding dimension (0: not checked)
     * @param threads intra-op threads (0: ORT's choice)
     * @param cudaId the CUDA device id, or -1 for the CPU
     * @param onMissingGpu what a CUDA device that cannot be used does
     * @return the scorer
     * @throws PynerException naming model.onnx when ORT cannot load it or it does not match the manifest
     */
    public static OnnxScorer open(Path model, Task task, List<String> manifestInputs, long padId, int width, int threads,
                                  int cudaId, OnMissingGpu onMissingGpu) throws PynerException {
        int numLabels = width;
        String reason = null;
        if (cudaId >= 0) {
            try {
                return openOn(model, task, manifestInputs, padId, numLabels, threads, cudaId, null);
            } catch (GpuUnavailable e) {
                if (onMissingGpu != OnMissingGpu.FALLBACK) {
                    throw new PynerException(model, e.getMessage(), e.getCause());
                }
                reason = e.getMessage();
                Gpu.LOG.warning(reason + "; running on the CPU instead (on_missing_gpu=fallback)");
            }
        }
        try {
            return openOn(model, task, manifestInputs, padId, numLabels, threads, -1, reason);
        } catch (GpuUnavailable e) {
            throw new IllegalStateException("no CUDA was asked for", e); // unreachable: the CPU path raises none
        }
    }

    /** Why a CUDA device cannot be used (internal: becomes a PynerException or the fallback warning). */
    private static final class GpuUnavailable extends Exception {
        private static final long serialVersionUID = 1L;

        GpuUnavailable(String message, Throwable cause) {
            super(message, cause);
        }
    }

    private static OnnxScorer openOn(Path model, Task task, List<String> manifestInputs, long padId, int numLabels, int threads,
                                     int cudaId, String fallbackReason) throws PynerException, GpuUnavailable {
        OrtEnvironment env = environment();
        OrtSession session = null;
        OrtCUDAProviderOptions cuda = null;
        try (OrtSession.SessionOptions so = new OrtSession.SessionOptions()) {
            so.setOptimizationLevel(OrtSession.SessionOptions.OptLevel.ALL_OPT);
            so.setExecutionMode(OrtSession.SessionOptions.ExecutionMode.SEQUENTIAL);
            so.setIntraOpNumThreads(threads);
            so.setInterOpNumThreads(1);
            so.addConfigEntry("session.intra_op.allow_spinning", "0"); // as Python: idle threads sleep (bench/)
            so.setSessionLogLevel(OrtLoggingLevel.ORT_LOGGING_LEVEL_ERROR);
            String device = Gpu.deviceName(cudaId);
            if (cudaId >= 0) {
                String missing = Gpu.missingGpuBuild(cudaId);
                if (missing != null) {
                    throw new GpuUnavailable(missing, null);
                }
                try {
                    cuda = new OrtCUDAProviderOptions(cudaId);
                    cuda.add("use_tf32", "0"); // as Python: fp32 artifacts keep their golden fixtures on the GPU
                    so.addCUDA(cuda);
                } catch (OrtException | LinkageError e) {
                    throw new GpuUnavailable("device " + device + ": the CUDA libraries that onnxruntime_gpu "
                            + env.getVersion() + " needs cannot be loaded (" + e.getMessage() + "); " + Gpu.CUDA_LIBS_HINT, e);
                }
            }
            try {
                session = env.createSession(model.toString(), so);
            } catch (OrtException e) {
                String m = String.valueOf(e.getMessage()).toLowerCase(java.util.Locale.ROOT);
                if (cudaId >= 0 && (m.contains("cuda") || m.contains("cudnn") || m.contains("cublas") || m.contains("device"))) {
                    throw new GpuUnavailable("device " + device + ": the CUDA provider cannot create a session ("
                            + e.getMessage() + "); check the device id (nvidia-smi, CUDA_VISIBLE_DEVICES) and "
                            + Gpu.CUDA_LIBS_HINT, e);
                }
                throw e;
            }
            Set<String> graphInputs = new HashSet<>(session.getInputNames());
            if (!graphInputs.equals(new HashSet<>(manifestInputs))) {
                throw new PynerException(model, "graph inputs " + session.getInputNames()
                        + " differ from the manifest's " + manifestInputs);
            }
            checkOutputs(model, task, session.getOutputInfo(), numLabels);
            return new OnnxScorer(env, session, List.copyOf(manifestInputs), padId, numLabels, device, fallbackReason);
        } catch (OrtException e) {
            closeQuietly(session);
            throw new PynerException(model, "ONNX Runtime cannot load it (" + e.getMessage() + ")", e);
        } catch (PynerException | GpuUnavailable e) {
            closeQuietly(session);
            throw e;
        } finally {
            if (cuda != null) {
                cuda.close();
            }
        }
    }

    /** The graph has the outputs of the artifact's task, of the manifest's width. */
    private static void checkOutputs(Path model, Task task, Map<String, NodeInfo> outputs, int width) throws PynerException {
        List<String> needed = switch (task) {
            case TOKEN_CLASSIFICATION -> List.of(SCORES);
            case TEXT_CLASSIFICATION -> List.of(LOGITS, SCORES);
            case FEATURE_EXTRACTION -> List.of(EMBEDDINGS);
        };
        int rank = task == Task.TOKEN_CLASSIFICATION ? 3 : 2;
        for (String name : needed) {
            if (!outputs.containsKey(name)) {
                throw new PynerException(model, "graph has no '" + name + "' output (outputs: " + outputs.keySet()
                        + "), which a " + task + " artifact has");
            }
            if (outputs.get(name).getInfo() instanceof TensorInfo info) {
                long[] shape = info.getShape();
                if (shape.length != rank) {
                    throw new PynerException(model, "'" + name + "' has " + shape.length + " dimensions, a " + task
                            + " artifact's has " + rank);
                }
                long last = shape[rank - 1];
                if (last > 0 && width > 0 && last != width) {
                    throw new PynerException(model, "'" + name + "' has " + last + (task == Task.FEATURE_EXTRACTION
                            ? " dimensions, the manifest's embedding_dim is " : " classes, the manifest lists ") + width
                            + (task == Task.FEATURE_EXTRACTION ? "" : " labels"));
                }
            }
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

    /** @return where the session runs: "cpu" or "cuda:N" */
    public String device() {
        return device;
    }

    /** @return why the session runs on the CPU although a CUDA device was asked for (fallback), or null */
    public String fallbackReason() {
        return fallbackReason;
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

    /**
     * Runs windows in batches (the same {@link Batches#plan} as {@link #forward}) and returns per window,
     * in input order, the requested per-text outputs' rows (float32 {@code [width]}): text
     * classification's {@code logits} and {@code scores}, feature extraction's {@code embeddings}.
     *
     * @param windows windows
     * @param batchSize maximum windows per batch
     * @param maxBatchTokens maximum padded tokens per batch
     * @param maxPadding maximum padding as a fraction of a batch's real tokens (infinity: no bound)
     * @param outputs the graph outputs to fetch (only these run)
     * @return per window, output name to its row
     */
    public List<Map<String, float[]>> forwardRows(List<TokenWindow> windows, int batchSize, int maxBatchTokens,
                                                 double maxPadding, List<String> outputs) {
        int[] lengths = new int[windows.size()];
        for (int i = 0; i < lengths.length; i++) {
            lengths[i] = windows.get(i).length();
        }
        List<Map<String, float[]>> results = new ArrayList<>(Collections.nCopies(windows.size(), null));
        for (int[] batch : Batches.plan(lengths, batchSize, maxBatchTokens, maxPadding)) {
            List<TokenWindow> ws = new ArrayList<>(batch.length);
            for (int i : batch) {
                ws.add(windows.get(i));
            }
            List<Map<String, float[]>> out = runRows(ws, outputs);
            for (int r = 0; r < batch.length; r++) {
                results.set(batch[r], out.get(r));
            }
        }
        return results;
    }

    private Map<String, OnnxTensor> feeds(Batches.Padded batch) throws OrtException {
        long[] shape = {batch.rows(), batch.longest()};
        Map<String, OnnxTensor> feeds = new HashMap<>();
        try {
            feeds.put("input_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(batch.ids()), shape));
            feeds.put("attention_mask", OnnxTensor.createTensor(env, LongBuffer.wrap(batch.mask()), shape));
            if (usesTypes) {
                feeds.put("token_type_ids", OnnxTensor.createTensor(env, LongBuffer.wrap(batch.types()), shape));
            }
            return feeds;
        } catch (OrtException | RuntimeException e) {
            for (OnnxTensor t : feeds.values()) {
                t.close();
            }
            throw e;
        }
    }

    /** One padded batch through the session, fetching per-text outputs; per row, name to its row. */
    private List<Map<String, float[]>> runRows(List<TokenWindow> windows, List<String> names) {
        Batches.Padded batch = Batches.Padded.of(windows, padId);
        int n = batch.rows();
        Map<String, OnnxTensor> feeds = Map.of();
        try {
            feeds = feeds(batch);
            List<Map<String, float[]>> rows = new ArrayList<>(n);
            for (int r = 0; r < n; r++) {
                rows.add(new LinkedHashMap<>());
            }
            try (OrtSession.Result result = session.run(feeds, new java.util.LinkedHashSet<>(names))) {
                for (String name : names) {
                    OnnxValue v = result.get(name).orElseThrow(() -> new PynerInferenceException("no '" + name + "' output"));
                    if (!(v instanceof OnnxTensor t)) {
                        throw new PynerInferenceException("'" + name + "' is not a tensor");
                    }
                    long[] s = t.getInfo().getShape();
                    if (s.length != 2 || s[0] != n || (numLabels > 0 && s[1] != numLabels)) {
                        throw new PynerInferenceException("'" + name + "' has shape " + java.util.Arrays.toString(s)
                                + ", expected [" + n + ", " + (numLabels > 0 ? String.valueOf(numLabels) : "dim") + "]");
                    }
                    int width = Math.toIntExact(s[1]);
                    java.nio.FloatBuffer buf = t.getFloatBuffer();
                    for (int r = 0; r < n; r++) {
                        float[] row = new float[width];
                        buf.position(r * width);
                        buf.get(row);
                        rows.get(r).put(name, row);
                    }
                }
            }
            return rows;
        } catch (OrtException e) {
            throw new PynerInferenceException("ONNX Runtime failed on a batch of " + n + " windows x " + batch.longest()
                    + " tokens: " + e.getMessage(), e);
        } finally {
            for (OnnxTensor t : feeds.values()) {
                t.close();
            }
        }
    }

    /** One padded batch through the session; returns per row its unpadded scores. */
    private float[][][] run(List<TokenWindow> windows) {
        Batches.Padded batch = Batches.Padded.of(windows, padId);
        int n = batch.rows();
        int longest = batch.longest();
        Map<String, OnnxTensor> feeds = Map.of();
        try {
            feeds = feeds(batch);
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
