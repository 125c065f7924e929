package dev.pyner.djl;

import ai.djl.Model;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.DataType;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Block;
import ai.djl.nn.SymbolBlock;
import ai.djl.translate.Batchifier;
import ai.djl.translate.Translator;
import ai.djl.translate.TranslatorContext;
import ai.djl.util.PairList;
import dev.pyner.AggregationStrategy;
import dev.pyner.TokenWindow;
import dev.pyner.Entity;
import dev.pyner.PynerException;
import dev.pyner.artifact.Manifest;
import dev.pyner.decode.EntityDecoder;
import dev.pyner.runtime.Batches;
import dev.pyner.runtime.Offline;
import dev.pyner.text.TextIndex;
import dev.pyner.text.TokenizerInfo;
import dev.pyner.text.WindowTokenizer;
import java.nio.FloatBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.UUID;

/**
 * A DJL translator with pyner's semantics: a text becomes its windows (max_length with stride, never
 * truncated); the windows of all texts of one {@code predict} / {@code batchPredict} call run as
 * one batch padded to the longest (sorted longest first, as the Python runtime orders a batch); the
 * float32 {@code scores} output is decoded exactly as the Python runtime decodes it. Entities equal
 * {@code PynerModel.predict} of the same texts (bit for bit when {@code PynerModel} batches them
 * the same way: no batch limits).
 *
 * <p>The artifact is read, checked and its tokenizer loaded once, by the first {@code prepare}
 * (DJL prepares once per predictor); the tokenizer is closed with the model (a resource of the
 * model's NDManager) or by {@link #close()}.
 */
public final class PynerTranslator implements Translator<String, Entity[]>, AutoCloseable {

    private final AggregationStrategy strategy;
    private Loaded loaded;

    /** What prepare() reads once per model. */
    private record Loaded(Path folder, WindowTokenizer tokenizer, EntityDecoder decoder, List<String> inputNames,
                          long padId, int numLabels) {}

    /** What batchProcessInput hands to batchProcessOutput. */
    private record Batch(List<String> texts, List<List<TokenWindow>> windows, List<TokenWindow> rows,
                         Batches.Padded padded, int[] rowOf) {}

    /**
     * Creates a translator.
     *
     * @param strategy the aggregation strategy
     */
    public PynerTranslator(AggregationStrategy strategy) {
        this.strategy = strategy;
    }

    /** @return the aggregation strategy */
    public AggregationStrategy strategy() {
        return strategy;
    }

    @Override
    public synchronized void prepare(TranslatorContext ctx) throws PynerException {
        Model model = ctx.getModel();
        Path folder = model.getModelPath().toAbsolutePath().normalize();
        if (loaded != null) {
            if (!loaded.folder().equals(folder)) {
                throw new IllegalStateException("this PynerTranslator was prepared for " + loaded.folder() + ", not " + folder
                        + "; use one translator per model");
            }
            return;
        }
        Offline.enforce();
        Manifest manifest = Manifest.read(folder);
        if (manifest.task() != dev.pyner.Task.TOKEN_CLASSIFICATION) {
            throw new dev.pyner.PynerUsageException(manifest.task(), dev.pyner.Task.TOKEN_CLASSIFICATION, folder
                    + ": the artifact is a " + manifest.task() + " model: PynerTranslator gives entities of a"
                    + " token-classification model; load it with PynerModel and use " + manifest.task().method()
                    + "(), or with plain DJL through its serving.properties");
        }
        manifest.checkFiles();
        TokenizerInfo info = TokenizerInfo.read(manifest);
        EntityDecoder decoder = new EntityDecoder(manifest.labels(), info);
        WindowTokenizer tokenizer = WindowTokenizer.load(info.path(), manifest.maxLength(), manifest.stride());
        List<String> names = new ArrayList<>();
        try {
            Block block = model.getBlock();
            PairList<String, Shape> described = block instanceof SymbolBlock ? block.describeInput() : null;
            if (described != null) {
                names.addAll(described.keys());
            }
        } catch (RuntimeException e) {
            tokenizer.close();
            throw e;
        }
        loaded = new Loaded(folder, tokenizer, decoder, names.isEmpty() ? manifest.inputs() : names,
                info.padTokenId(), manifest.labels().size());
        // Closed with the model: ZooModel.close() closes the model's NDManager and its resources.
        model.getNDManager().attachInternal("pyner-translator-" + UUID.randomUUID(), this);
    }

    /** A non-null batchifier makes DJL's Predictor hand whole batches to batchProcessInput. */
    @Override
    public Batchifier getBatchifier() {
        return Batchifier.STACK;
    }

    @Override
    public NDList processInput(TranslatorContext ctx, String input) {
        return batchProcessInput(ctx, Collections.singletonList(input));
    }

    @Override
    public Entity[] processOutput(TranslatorContext ctx, NDList list) {
        return batchProcessOutput(ctx, list).get(0);
    }

    @Override
    public NDList batchProcessInput(TranslatorContext ctx, List<String> inputs) {
        Loaded l = state();
        if (inputs.isEmpty()) {
            throw new IllegalArgumentException("no texts to translate");
        }
        List<String> texts = TextIndex.checkTexts(inputs);
        List<List<TokenWindow>> perText = l.tokenizer().encode(texts);
        List<TokenWindow> flat = new ArrayList<>();
        perText.forEach(flat::addAll);
        int[] lengths = flat.stream().mapToInt(TokenWindow::length).toArray();
        // One batch, rows in the Python runtime's order (longest first, stable).
        int[] order = Batches.plan(lengths, Integer.MAX_VALUE, Integer.MAX_VALUE).get(0);
        int[] rowOf = new int[flat.size()];
        List<TokenWindow> rows = new ArrayList<>(flat.size());
        for (int r = 0; r < order.length; r++) {
            rowOf[order[r]] = r;
            rows.add(flat.get(order[r]));
        }
        Batches.Padded batch = Batches.Padded.of(rows, l.padId());
        NDManager m = ctx.getNDManager();
        Shape shape = new Shape(batch.rows(), batch.longest());
        NDList list = new NDList();
        for (String name : l.inputNames()) {
            long[] data = switch (name) {
                case "input_ids" -> batch.ids();
                case "attention_mask" -> batch.mask();
                case "token_type_ids" -> batch.types();
                default -> throw new IllegalArgumentException("model input '" + name + "' is not one pyner feeds");
            };
            NDArray a = m.create(data, shape);
            a.setName(name);
            list.add(a);
        }
        ctx.setAttachment("pyner", new Batch(texts, perText, rows, batch, rowOf));
        return list;
    }

    @Override
    public List<Entity[]> batchProcessOutput(TranslatorContext ctx, NDList list) {
        Loaded l = state();
        Batch b = (Batch) ctx.getAttachment("pyner");
        NDArray scores = list.get("scores");
        if (scores == null) {
            scores = list.get(0);
        }
        int rows = b.rows().size();
        long[] shape = scores.getShape().getShape();
        if (shape.length != 3 || shape[0] != rows || shape[1] != b.padded().longest() || shape[2] != l.numLabels()) {
            throw new IllegalStateException("model output 'scores' has shape " + scores.getShape()
                    + ", expected (" + rows + ", " + b.padded().longest() + ", " + l.numLabels() + ")");
        }
        float[][][] perRow = b.padded().unpad(FloatBuffer.wrap(scores.toType(DataType.FLOAT32, false).toFloatArray()),
                b.rows(), l.numLabels());
        List<Entity[]> out = new ArrayList<>(b.texts().size());
        int k = 0; // index of the text's first window in the flattened windows
        for (int i = 0; i < b.texts().size(); i++) {
            List<TokenWindow> windows = b.windows().get(i);
            List<float[][]> perWindow = new ArrayList<>(windows.size());
            for (int w = 0; w < windows.size(); w++, k++) {
                perWindow.add(perRow[b.rowOf()[k]]);
            }
            List<Entity> entities = l.decoder().decodeText(new TextIndex(b.texts().get(i)), windows, perWindow, strategy, null);
            out.add(entities.toArray(new Entity[0]));
        }
        return out;
    }

    /** Closes the tokenizer (idempotent; the model's NDManager calls it when the model closes). */
    @Override
    public synchronized void close() {
        if (loaded != null) {
            loaded.tokenizer().close();
        }
        loaded = null;
    }

    /** @return true once prepared and until closed */
    public synchronized boolean isLoaded() {
        return loaded != null;
    }

    private synchronized Loaded state() {
        if (loaded == null) {
            throw new IllegalStateException("this PynerTranslator is not prepared, or its model was closed");
        }
        return loaded;
    }
}
