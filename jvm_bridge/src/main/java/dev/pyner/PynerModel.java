package dev.pyner;

import dev.pyner.artifact.Golden;
import dev.pyner.artifact.Manifest;
import dev.pyner.decode.ClassScores;
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
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A pyner artifact loaded for inference: the Java mirror of the Python runtime ({@code
 * pyner.load(...)}). Same tokenizer windows, same batches, same ONNX Runtime session options, same
 * decoding: the same entities, labels and embeddings, and bit-identical scores with the same ONNX
 * Runtime version and thread settings.
 *
 * <pre>{@code
 * try (PynerModel model = PynerModel.builder().setArtifact(Paths.get("artifacts/demo")).optThreads(2).build()) {
 *     List<List<Entity>> entities = model.predict(List.of("Angela Merkel visited Paris."), AggregationStrategy.SIMPLE);
 * }
 * }</pre>
 *
 * <p>An artifact serves one {@link Task} ({@link #task()}, docs/tasks.md): token classification
 * {@link #predict(List)} (entities), text classification {@link #classify(List)} (ranked labels), feature
 * extraction {@link #embed(List)} (sentence embeddings). Asking for another task's output throws
 * {@link PynerUsageException} naming the artifact's task and the method to use.
 *
 * <pre>{@code
 * try (PynerModel sentiment = PynerModel.builder().setArtifact("artifacts/sentiment").build()) {
 *     List<List<LabelScore>> labels = sentiment.classify(List.of("What a great day!"), 0, LongText.AVERAGE);
 * }
 * try (PynerModel minilm = PynerModel.builder().setArtifact("artifacts/minilm").build()) {
 *     List<float[]> vectors = minilm.embed(List.of("first text", "second text"));
 * }
 * }</pre>
 *
 * <p>Thread-safe: {@code predict}, {@code classify} and {@code embed} may be called from several
 * threads at once. {@link #close()} is idempotent; calls after it throw {@link IllegalStateException}.
 */
public final class PynerModel implements AutoCloseable {

    static {
        Offline.enforce();
    }

    private final Manifest manifest;
    private final Task task;
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
        this.task = manifest.task();
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
        task.require(Task.TOKEN_CLASSIFICATION, manifest.folder(), "predict");
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
        task.require(Task.TOKEN_CLASSIFICATION, manifest.folder(), "score");
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
        task.require(Task.TOKEN_CLASSIFICATION, manifest.folder(), "decode");
        Objects.requireNonNull(strategy, "strategy");
        return decoder.decodeText(new TextIndex(scored.text()), scored.windows(), scored.scores(), strategy, ignoreLabels);
    }

    /**
     * Text classification: per text its top label (top_k 1, long texts truncated).
     *
     * @param texts texts (no null elements)
     * @return per text, in input order, a list of its one best label
     * @throws PynerUsageException when the artifact is not a text-classification one
     */
    public List<List<LabelScore>> classify(List<String> texts) {
        return classify(texts, 1, LongText.TRUNCATE);
    }

    /**
     * Text classification: per text its {@code topK} best labels (long texts truncated).
     *
     * @param texts texts (no null elements)
     * @param topK labels per text (0: all; more than the labels: all)
     * @return per text, in input order, its ranked labels
     * @throws PynerUsageException when the artifact is not a text-classification one
     */
    public List<List<LabelScore>> classify(List<String> texts, int topK) {
        return classify(texts, topK, LongText.TRUNCATE);
    }

    /**
     * Text classification, as transformers' {@code pipeline("text-classification", top_k=...)}
     * (docs/tasks.md): per text every label with its float32 score, sorted by score, highest first
     * (ties: lower class id first), cut to {@code topK}. {@code longText} says what a text longer than
     * one window gives: {@link LongText#TRUNCATE} its first window (the pipeline with truncation), {@link
     * LongText#AVERAGE} every window, their logits averaged and the manifest's function_to_apply applied.
     *
     * @param texts texts (no null elements)
     * @param topK labels per text (0: all; more than the labels: all)
     * @param longText TRUNCATE or AVERAGE
     * @return per text, in input order, its ranked labels
     * @throws PynerUsageException when the artifact is not a text-classification one
     * @throws IllegalArgumentException for null texts (naming the index) or a negative topK
     * @throws PynerInferenceException when the tokenizer or ONNX Runtime fails
     */
    public List<List<LabelScore>> classify(List<String> texts, int topK, LongText longText) {
        task.require(Task.TEXT_CLASSIFICATION, manifest.folder(), "classify");
        if (topK < 0) {
            throw new IllegalArgumentException("topK " + topK + " must be >= 0 (0: every label)");
        }
        List<float[]> scores = classScores(texts, longText);
        List<List<LabelScore>> out = new ArrayList<>(scores.size());
        for (float[] s : scores) {
            out.add(ClassScores.rank(s, manifest.labels(), topK));
        }
        return out;
    }

    /**
     * Text classification before ranking: per text the float32 score of every class, in class order.
     * A text whose windows that ran are one gives the graph's {@code scores}; several ({@link
     * LongText#AVERAGE}) give {@link ClassScores#average} of their {@code logits}.
     *
     * @param texts texts (no null elements)
     * @param longText TRUNCATE (first windows, fetching {@code scores}) or AVERAGE (every window,
     *     fetching {@code logits} and {@code scores})
     * @return per text, in input order, its class scores
     * @throws PynerUsageException when the artifact is not a text-classification one
     */
    public List<float[]> classScores(List<String> texts, LongText longText) {
        task.require(Task.TEXT_CLASSIFICATION, manifest.folder(), "classScores");
        Objects.requireNonNull(longText, "longText");
        boolean truncate = longText == LongText.TRUNCATE;
        List<TextOutputs> outs = outputs(texts, truncate,
                truncate ? List.of(OnnxScorer.SCORES) : List.of(OnnxScorer.LOGITS, OnnxScorer.SCORES));
        List<float[]> result = new ArrayList<>(outs.size());
        for (TextOutputs o : outs) {
            result.add(o.windows().size() == 1 ? o.output(0, OnnxScorer.SCORES)
                    : ClassScores.average(o.outputs(OnnxScorer.LOGITS), manifest.functionToApply()));
        }
        return result;
    }

    /**
     * Sentence embeddings, as sentence-transformers' {@code encode} on the same folder (docs/tasks.md):
     * per text the graph's pooled (and, when the manifest says so, L2-normalized) float32 {@code
     * embeddings} row of its first window (truncation at max_length, as sentence-transformers truncates
     * at max_seq_length).
     *
     * @param texts texts (no null elements)
     * @return per text, in input order, its embedding ({@code float[embedding_dim]})
     * @throws PynerUsageException when the artifact is not a feature-extraction one
     * @throws IllegalArgumentException for null texts, naming the index
     * @throws PynerInferenceException when the tokenizer or ONNX Runtime fails
     */
    public List<float[]> embed(List<String> texts) {
        task.require(Task.FEATURE_EXTRACTION, manifest.folder(), "embed");
        List<TextOutputs> outs = outputs(texts, true, List.of(OnnxScorer.EMBEDDINGS));
        List<float[]> result = new ArrayList<>(outs.size());
        for (TextOutputs o : outs) {
            result.add(o.output(0, OnnxScorer.EMBEDDINGS));
        }
        return result;
    }

    /**
     * Text classification and feature extraction: tokenizes texts into windows and runs the windows
     * that run (every window, or each text's first only) of all texts together, planned by the same
     * batches as NER, fetching only the named per-text outputs. What {@link #classify} and {@link #embed}
     * compute from, and what the golden fixtures and parity reports compare.
     *
     * @param texts texts (no null elements)
     * @param firstWindowOnly true: each text keeps and runs its first window only
     * @param outputs graph outputs to fetch ({@code logits}, {@code scores}; {@code embeddings})
     * @return per text, its windows that ran and their outputs
     * @throws PynerUsageException on a token-classification artifact (its per-token outputs are {@link #score}'s)
     */
    public List<TextOutputs> outputs(List<?> texts, boolean firstWindowOnly, List<String> outputs) {
        if (task == Task.TOKEN_CLASSIFICATION) {
            throw new PynerUsageException(task, Task.TEXT_CLASSIFICATION, manifest.folder() + ": the artifact is a "
                    + task + " model: its outputs are per token; use score() or predict()");
        }
        List<String> allowed = task == Task.TEXT_CLASSIFICATION ? List.of(OnnxScorer.LOGITS, OnnxScorer.SCORES)
                : List.of(OnnxScorer.EMBEDDINGS);
        if (outputs.isEmpty() || !allowed.containsAll(outputs)) {
            throw new IllegalArgumentException("outputs " + outputs + ": a " + task + " artifact's per-text outputs are " + allowed);
        }
        List<String> checked = TextIndex.checkTexts(texts);
        lock.readLock().lock();
        try {
            ensureOpen();
            List<List<TokenWindow>> encoded = tokenizer.encode(checked);
            List<TokenWindow> flat = new ArrayList<>();
            List<List<TokenWindow>> kept = new ArrayList<>(encoded.size());
            for (List<TokenWindow> ws : encoded) {
                List<TokenWindow> k = firstWindowOnly && ws.size() > 1 ? ws.subList(0, 1) : ws;
                kept.add(k);
                flat.addAll(k);
            }
            List<Map<String, float[]>> rows = scorer.forwardRows(flat, maxBatchSize, maxBatchTokens, maxPadding, outputs);
            List<TextOutputs> out = new ArrayList<>(checked.size());
            int i = 0;
            for (int t = 0; t < checked.size(); t++) {
                List<TokenWindow> ws = kept.get(t);
                out.add(new TextOutputs(checked.get(t), ws, rows.subList(i, i + ws.size())));
                i += ws.size();
            }
            return out;
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * Re-runs the artifact's golden fixtures (all texts at once, with this model's batches, as the
     * fixtures were computed) and compares (what {@code build()} does unless {@code optSelfCheck(false)}),
     * per the artifact's task: token classification its windows' scores and entities of every strategy;
     * text classification every window's logits and scores and the full ranked labels of both long_text
     * modes; feature extraction the first windows' tokens and the embeddings.
     *
     * @return the comparison
     * @throws PynerException when golden.json cannot be read
     */
    public Comparison selfCheck() throws PynerException {
        Golden golden = Golden.read(manifest.folder());
        List<String> texts = golden.texts();
        switch (task) {
            case TEXT_CLASSIFICATION: {
                List<TextOutputs> windows = outputs(texts, false, List.of(OnnxScorer.LOGITS, OnnxScorer.SCORES));
                Map<LongText, List<List<LabelScore>>> ranked = new EnumMap<>(LongText.class);
                for (LongText mode : LongText.values()) {
                    ranked.put(mode, classify(texts, 0, mode));
                }
                return Comparison.classification(golden, windows, ranked, manifest.scoreTolerance());
            }
            case FEATURE_EXTRACTION:
                return Comparison.embeddings(golden, outputs(texts, true, List.of(OnnxScorer.EMBEDDINGS)), embed(texts),
                        manifest.scoreTolerance());
            default:
                return Comparison.golden(golden, score(texts), (st, s) -> decode(st, s, null), manifest.scoreTolerance());
        }
    }

    /** @return the artifact's task: which of predict, classify and embed it serves */
    public Task task() {
        return task;
    }

    /** @return the manifest */
    public Manifest manifest() {
        return manifest;
    }

    /** @return labels by class id (empty for feature extraction) */
    public List<String> labels() {
        return manifest.labels();
    }

    /** @return feature extraction's embedding dimension (the manifest's embedding_dim), 0 for the other tasks */
    public int embeddingDim() {
        return task == Task.FEATURE_EXTRACTION ? manifest.embeddingDim() : 0;
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
        return "PynerModel(" + manifest.folder() + ", " + task + ", " + manifest.modelType() + " " + manifest.precision() + ", "
                + (task == Task.FEATURE_EXTRACTION ? "dim " + manifest.embeddingDim() : manifest.labels().size() + " labels")
                + ", max_length " + manifest.maxLength() + ", " + scorer.device() + ")";
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
            Task task = manifest.task();
            EntityDecoder entityDecoder = task == Task.TOKEN_CLASSIFICATION ? new EntityDecoder(manifest.labels(), info) : null;
            WindowTokenizer tok = WindowTokenizer.load(info.path(), maxLength, stride);
            OnnxScorer scorer;
            try {
                scorer = OnnxScorer.open(folder.resolve(Manifest.MODEL_FILE), task, manifest.inputs(), info.padTokenId(),
                        task == Task.FEATURE_EXTRACTION ? manifest.embeddingDim() : manifest.labels().size(),
                        threads, cudaId, onMissingGpu);
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
