package dev.pyner;

import dev.pyner.artifact.Golden;
import dev.pyner.artifact.Manifest;
import dev.pyner.decode.EntityDecoder;
import dev.pyner.runtime.Batches;
import dev.pyner.runtime.OnnxScorer;
import dev.pyner.runtime.Offline;
import dev.pyner.text.TextIndex;
import dev.pyner.text.TokenizerInfo;
import dev.pyner.text.WindowTokenizer;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A pyner artifact loaded for inference: the Java mirror of the Python runtime ({@code
 * pyner.load(...)}). Same tokenizer windows, same batches, same ONNX Runtime session options, same
 * decoding: the same entities, and bit-identical scores with the same ONNX Runtime version and
 * thread settings.
 *
 * <pre>{@code
 * try (PynerModel model = PynerModel.builder().setArtifact(Paths.get("artifacts/demo")).optThreads(2).build()) {
 *     List<List<Entity>> entities = model.predict(List.of("Angela Merkel visited Paris."), AggregationStrategy.SIMPLE);
 * }
 * }</pre>
 *
 * <p>Thread-safe: {@code predict} may be called from several threads at once. {@link #close()} is
 * idempotent; calls after it throw {@link IllegalStateException}.
 */
public final class PynerModel implements AutoCloseable {

    static {
        Offline.enforce();
    }

    private final Manifest manifest;
    private final WindowTokenizer tokenizer;
    private final OnnxScorer scorer;
    private final EntityDecoder decoder;
    private final int threads;
    private final int maxBatchSize;
    private final int maxBatchTokens;
    private final double maxPadding;
    private final ReentrantReadWriteLock lock = new ReentrantReadWriteLock();
    private volatile boolean closed;

    private PynerModel(Manifest manifest, WindowTokenizer tokenizer, OnnxScorer scorer, EntityDecoder decoder,
                       int threads, int maxBatchSize, int maxBatchTokens, double maxPadding) {
        this.manifest = manifest;
        this.tokenizer = tokenizer;
        this.scorer = scorer;
        this.decoder = decoder;
        this.threads = threads;
        this.maxBatchSize = maxBatchSize;
        this.maxBatchTokens = maxBatchTokens;
        this.maxPadding = maxPadding;
    }

    /**
     * The library's version, as the build wrote it ({@code dev/pyner/version.properties}, filtered
     * from the pom's {@code project.version}).
     *
     * @return e.g. "0.1.0"
     */
    public static String version() {
        try (java.io.InputStream in = PynerModel.class.getResourceAsStream("version.properties")) {
            java.util.Properties p = new java.util.Properties();
            if (in != null) {
                p.load(in);
            }
            return p.getProperty("version", "unknown");
        } catch (java.io.IOException e) {
            return "unknown";
        }
    }

    /** @return a new builder */
    public static Builder builder() {
        return new Builder();
    }

    /**
     * Entities per text with the {@code simple} strategy (Python's default).
     *
     * @param texts texts (no null elements)
     * @return per text, in input order, its entities
     * @throws IllegalArgumentException for null texts, naming the index
     * @throws PynerInferenceException when the tokenizer or ONNX Runtime fails
     */
    public List<List<Entity>> predict(List<String> texts) {
        return predict(texts, AggregationStrategy.SIMPLE, null);
    }

    /**
     * Entities per text.
     *
     * @param texts texts (no null elements)
     * @param strategy the aggregation strategy
     * @return per text, in input order, its entities
     */
    public List<List<Entity>> predict(List<String> texts, AggregationStrategy strategy) {
        return predict(texts, strategy, null);
    }

    /**
     * Entities per text, dropping groups whose label is in {@code ignoreLabels}.
     *
     * @param texts texts (no null elements)
     * @param strategy the aggregation strategy
     * @param ignoreLabels labels to drop after grouping; null for the default {"O"}
     * @return per text, in input order, its entities
     */
    public List<List<Entity>> predict(List<String> texts, AggregationStrategy strategy, Collection<String> ignoreLabels) {
        Objects.requireNonNull(strategy, "strategy");
        List<ScoredText> scored = score(texts);
        List<List<Entity>> out = new ArrayList<>(scored.size());
        for (ScoredText s : scored) {
            out.add(decode(s, strategy, ignoreLabels));
        }
        return out;
    }

    /**
     * Entities of one text with the given strategy.
     *
     * @param text the text
     * @param strategy the aggregation strategy
     * @return its entities
     */
    public List<Entity> predict(String text, AggregationStrategy strategy) {
        return predict(java.util.Collections.singletonList(text), strategy, null).get(0);
    }

    /**
     * Tokenizes texts into windows and runs the model: per-token scores, before decoding.
     *
     * @param texts texts (no null elements)
     * @return per text, its windows and their scores
     */
    public List<ScoredText> score(List<?> texts) {
        List<String> checked = TextIndex.checkTexts(texts);
        lock.readLock().lock();
        try {
            ensureOpen();
            List<List<TokenWindow>> encoded = tokenizer.encode(checked);
            List<TokenWindow> flat = new ArrayList<>();
            for (List<TokenWindow> ws : encoded) {
                flat.addAll(ws);
            }
            List<float[][]> scores = scorer.forward(flat, maxBatchSize, maxBatchTokens, maxPadding);
            List<ScoredText> out = new ArrayList<>(checked.size());
            int k = 0;
            for (int i = 0; i < checked.size(); i++) {
                List<TokenWindow> ws = encoded.get(i);
                out.add(new ScoredText(checked.get(i), ws, scores.subList(k, k + ws.size())));
                k += ws.size();
            }
            return out;
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * Decodes one scored text into entities.
     *
     * @param scored a text scored by {@link #score(List)}
     * @param strategy the aggregation strategy
     * @param ignoreLabels labels to drop after grouping; null for {"O"}
     * @return its entities
     */
    public List<Entity> decode(ScoredText scored, AggregationStrategy strategy, Collection<String> ignoreLabels) {
        Objects.requireNonNull(strategy, "strategy");
        return decoder.decodeText(new TextIndex(scored.text()), scored.windows(), scored.scores(), strategy, ignoreLabels);
    }

    /**
     * Re-runs the artifact's golden fixtures (all texts at once, with this model's batches, as the
     * fixtures were computed) and compares (what {@code build()} does unless {@code optSelfCheck(false)}).
     *
     * @return the comparison
     * @throws PynerException when golden.json cannot be read
     */
    public Comparison selfCheck() throws PynerException {
        Golden golden = Golden.read(manifest.folder());
        return Comparison.golden(golden, score(golden.texts()), (st, s) -> decode(st, s, null), manifest.scoreTolerance());
    }

    /** @return the manifest */
    public Manifest manifest() {
        return manifest;
    }

    /** @return labels by class id */
    public List<String> labels() {
        return manifest.labels();
    }

    /** @return the artifact folder */
    public Path artifact() {
        return manifest.folder();
    }

    /** @return the ONNX Runtime version in use (the native library's) */
    public String onnxRuntimeVersion() {
        return scorer.onnxRuntimeVersion();
    }

    /** @return where the model runs: "cpu" or "cuda:N" (the CPU after a fallback) */
    public String device() {
        return scorer.device();
    }

    /** @return why the model runs on the CPU although a CUDA device was asked for (FALLBACK), or null */
    public String fallbackReason() {
        return scorer.fallbackReason();
    }

    /** @return intra-op threads asked for (0: ONNX Runtime's choice) */
    public int threads() {
        return threads;
    }

    private void ensureOpen() {
        if (closed) {
            throw new IllegalStateException("this PynerModel is closed");
        }
    }

    /** Closes the tokenizer and the ONNX Runtime session (idempotent; waits for running predictions). */
    @Override
    public void close() {
        lock.writeLock().lock();
        try {
            if (closed) {
                return;
            }
            closed = true;
            try {
                scorer.close();
            } finally {
                tokenizer.close();
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public String toString() {
        return "PynerModel(" + manifest.folder() + ", " + manifest.modelType() + " " + manifest.precision() + ", "
                + manifest.labels().size() + " labels, max_length " + manifest.maxLength() + ", " + scorer.device() + ")";
    }

    /** Builder: {@code setArtifact} is required, the {@code opt*} settings are optional. */
    public static final class Builder {
        /** Stack of the thread that loads the model (see {@link #build()}). */
        static final long LOAD_STACK_BYTES = 256L << 20;
        private Path artifact;
        private int threads;
        private boolean selfCheck = true;
        private boolean checksums = true;
        private String expectDigest;
        private int maxBatchSize = Batches.DEFAULT_BATCH_SIZE;
        private int maxBatchTokens = Batches.DEFAULT_MAX_BATCH_TOKENS;
        private double maxPadding = Batches.DEFAULT_MAX_PADDING;
        private int cudaId = -1;
        private OnMissingGpu onMissingGpu = OnMissingGpu.FAIL;

        private Builder() {}

        /**
         * Sets the artifact folder (required).
         *
         * @param folder the folder made by {@code pyner package}
         * @return this builder
         */
        public Builder setArtifact(Path folder) {
            this.artifact = Objects.requireNonNull(folder, "folder");
            return this;
        }

        /**
         * Sets the artifact folder (required).
         *
         * @param folder the folder made by {@code pyner package}
         * @return this builder
         */
        public Builder setArtifact(String folder) {
            return setArtifact(Paths.get(Objects.requireNonNull(folder, "folder")));
        }

        /**
         * ONNX Runtime intra-op threads; 0 (the default) lets ONNX Runtime choose (physical cores),
         * as the Python runtime does by default.
         *
         * @param threads threads, &gt;= 0
         * @return this builder
         */
        public Builder optThreads(int threads) {
            if (threads < 0) {
                throw new IllegalArgumentException("threads must be >= 0, got " + threads);
            }
            this.threads = threads;
            return this;
        }

        /**
         * Whether {@link #build()} re-runs the golden fixtures and refuses a model that does not
         * reproduce them (default true).
         *
         * @param selfCheck true to check
         * @return this builder
         */
        public Builder optSelfCheck(boolean selfCheck) {
            this.selfCheck = selfCheck;
            return this;
        }

        /**
         * Whether {@link #build()} checks every file's size and sha256 against the manifest
         * (default true).
         *
         * @param checksums true to check
         * @return this builder
         */
        public Builder optChecksums(boolean checksums) {
            this.checksums = checksums;
            return this;
        }

        /**
         * Pins the artifact: {@link #build()} refuses any artifact whose digest ("sha256:" + the hex
         * sha256 of the exact bytes of its {@code pyner.json}, what {@code pyner package} and {@code
         * pyner verify} print) is not this one, and then checks every file's checksum (even with
         * {@code optChecksums(false)}: the digest vouches for the files only through them).
         *
         * @param digest "sha256:" and 64 hex digits
         * @return this builder
         * @throws IllegalArgumentException when {@code digest} is not a digest
         */
        public Builder optExpectDigest(String digest) {
            this.expectDigest = Manifest.parseDigest(digest);
            return this;
        }

        /**
         * Where the model runs: {@code cpu} (the default), {@code cuda} or {@code cuda:N} (CUDA device N,
         * 0 first). CUDA needs the GPU build of ONNX Runtime Java ({@code
         * com.microsoft.onnxruntime:onnxruntime_gpu}, same version, in place of {@code onnxruntime}),
         * the CUDA libraries it was built for, and the device; what happens when one is missing is
         * {@link #optOnMissingGpu(OnMissingGpu)}'s.
         *
         * @param device cpu, cuda or cuda:N
         * @return this builder
         * @throws IllegalArgumentException for any other device
         */
        public Builder optDevice(String device) {
            this.cudaId = dev.pyner.runtime.Gpu.parseDevice(device);
            return this;
        }

        /**
         * What {@link #build()} does when the CUDA device of {@link #optDevice(String)} cannot be used:
         * {@link OnMissingGpu#FAIL} (the default) throws a {@link PynerException} naming what is missing
         * (the GPU build, the CUDA libraries, the device); {@link OnMissingGpu#FALLBACK} loads on the
         * CPU after one logged warning ({@link PynerModel#fallbackReason()} keeps it).
         *
         * @param policy FAIL or FALLBACK
         * @return this builder
         */
        public Builder optOnMissingGpu(OnMissingGpu policy) {
            this.onMissingGpu = Objects.requireNonNull(policy, "policy");
            return this;
        }

        /**
         * Maximum windows per batch (default 32, as Python).
         *
         * @param size &gt;= 1
         * @return this builder
         */
        public Builder optMaxBatchSize(int size) {
            if (size < 1) {
                throw new IllegalArgumentException("max batch size must be >= 1, got " + size);
            }
            this.maxBatchSize = size;
            return this;
        }

        /**
         * Maximum padded tokens per batch (default {@value dev.pyner.runtime.Batches#DEFAULT_MAX_BATCH_TOKENS}, as Python).
         *
         * @param tokens &gt;= 1
         * @return this builder
         */
        public Builder optMaxBatchTokens(int tokens) {
            if (tokens < 1) {
                throw new IllegalArgumentException("max batch tokens must be >= 1, got " + tokens);
            }
            this.maxBatchTokens = tokens;
            return this;
        }

        /**
         * A batch also closes where padding it to its longest window would exceed its real tokens
         * by more than this fraction (default {@value dev.pyner.runtime.Batches#DEFAULT_MAX_PADDING},
         * as Python's {@code max_padding}; {@code Double.POSITIVE_INFINITY}: no bound).
         *
         * @param fraction &gt;= 0
         * @return this builder
         */
        public Builder optMaxPadding(double fraction) {
            if (!(fraction >= 0)) {
                throw new IllegalArgumentException("max padding must be >= 0, got " + fraction);
            }
            this.maxPadding = fraction;
            return this;
        }

        /**
         * Loads the artifact: manifest and format version, checksums, tokenizer, ONNX Runtime
         * session, then (unless turned off) the golden self-check.
         *
         * @return the model
         * @throws PynerException naming the file at fault and the reason
         */
        public PynerModel build() throws PynerException {
            if (artifact == null) {
                throw new IllegalStateException("setArtifact(...) is required");
            }
            // Seen with ONNX Runtime Java 1.29.0 on Linux: creating a session needs thread stack in
            // proportion to the process's command line; past ~4 KB (a java -cp with Spark's jars,
            // every Spark executor) the default 1 MB stack overflows and the JVM dies with SIGSEGV.
            // So the whole load runs on a dedicated thread with a large stack (address space
            // reserved, not memory committed); inference on the loaded session is unaffected.
            java.util.concurrent.atomic.AtomicReference<Object> result = new java.util.concurrent.atomic.AtomicReference<>();
            Thread loader = new Thread(null, () -> {
                try {
                    result.set(buildHere());
                } catch (Throwable t) {
                    result.set(t);
                }
            }, "pyner-model-load", LOAD_STACK_BYTES);
            loader.setDaemon(true);
            loader.start();
            try {
                loader.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new PynerInferenceException("interrupted while loading " + artifact, e);
            }
            Object r = result.get();
            if (r instanceof PynerModel m) {
                return m;
            }
            if (r instanceof PynerException e) {
                throw e;
            }
            if (r instanceof RuntimeException e) {
                throw e;
            }
            if (r instanceof Error e) {
                throw e;
            }
            throw new PynerInferenceException("loading " + artifact + " failed: " + r, (Throwable) r);
        }

        private PynerModel buildHere() throws PynerException {
            Offline.enforce();
            Path folder = artifact.toAbsolutePath().normalize();
            Manifest manifest = Manifest.read(folder);
            if (expectDigest != null) {
                manifest.checkDigest(expectDigest);
            }
            if (checksums || expectDigest != null) {
                manifest.checkFiles();
            }
            int maxLength = manifest.maxLength();
            int stride = manifest.stride();
            if (stride < 0 || stride >= maxLength - 2) {
                throw new PynerException(manifest.path(), "stride " + stride + " must be >= 0 and well below max_length " + maxLength);
            }
            TokenizerInfo info = TokenizerInfo.read(manifest);
            EntityDecoder entityDecoder = new EntityDecoder(manifest.labels(), info);
            WindowTokenizer tok = WindowTokenizer.load(info.path(), maxLength, stride);
            OnnxScorer scorer;
            try {
                scorer = OnnxScorer.open(folder.resolve(Manifest.MODEL_FILE), manifest.inputs(),
                        info.padTokenId(), manifest.labels().size(), threads, cudaId, onMissingGpu);
            } catch (PynerException | RuntimeException e) {
                tok.close();
                throw e;
            }
            PynerModel m = new PynerModel(manifest, tok, scorer, entityDecoder, threads, maxBatchSize, maxBatchTokens, maxPadding);
            if (selfCheck) {
                try {
                    Comparison report = m.selfCheck();
                    if (!report.ok()) {
                        throw new PynerException(folder.resolve(Manifest.GOLDEN_FILE),
                                "this runtime does not reproduce the golden fixtures: "
                                        + String.join("; ", report.differences().subList(0, Math.min(3, report.differences().size())))
                                        + " (" + report.summary() + ")");
                    }
                } catch (PynerException | RuntimeException e) {
                    m.close();
                    throw e;
                }
            }
            return m;
        }
    }
}
