package dev.pyner.djl;

import ai.djl.Model;
import ai.djl.ndarray.NDArray;
import ai.djl.ndarray.NDList;
import ai.djl.ndarray.NDManager;
import ai.djl.ndarray.types.Shape;
import ai.djl.nn.Block;
import ai.djl.nn.SymbolBlock;
import ai.djl.translate.NoBatchifyTranslator;
import ai.djl.translate.TranslatorContext;
import ai.djl.util.PairList;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.pyner.AggregationStrategy;
import dev.pyner.Entity;
import dev.pyner.PynerException;
import dev.pyner.Window;
import dev.pyner.artifact.Manifest;
import dev.pyner.decode.EntityDecoder;
import dev.pyner.runtime.Batches;
import dev.pyner.runtime.Offline;
import dev.pyner.text.TextIndex;
import dev.pyner.text.TokenDecoders;
import dev.pyner.text.Vocabulary;
import dev.pyner.text.WindowTokenizer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;

/**
 * A DJL translator with pyner's semantics: a text becomes its windows (max_length with stride, never
 * truncated), all windows of the text run as one batch padded to the longest (sorted by length, as
 * the Python runtime orders a batch), and the float32 {@code scores} output is decoded exactly as the
 * Python runtime decodes it. Entities equal {@code PynerModel.predict} for texts of up to
 * {@value dev.pyner.runtime.Batches#DEFAULT_BATCH_SIZE} windows (one batch in both).
 */
public final class PynerTranslator implements NoBatchifyTranslator<String, Entity[]> {

    private final AggregationStrategy strategy;
    private WindowTokenizer tokenizer;
    private EntityDecoder decoder;
    private List<String> inputNames;
    private long padId;
    private int numLabels;

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
    public void prepare(TranslatorContext ctx) throws PynerException {
        Offline.enforce();
        Model model = ctx.getModel();
        Path folder = model.getModelPath();
        Manifest manifest = Manifest.read(folder);
        manifest.checkFiles();
        Path tokPath = folder.resolve(Manifest.TOKENIZER_FILE);
        JsonObject tok = Manifest.readJsonObject(tokPath);
        JsonObject info = manifest.tokenizer();
        JsonObject tm = tok.has("model") ? tok.getAsJsonObject("model") : new JsonObject();
        String prefix = info.has("continuing_subword_prefix") ? str(info.get("continuing_subword_prefix"))
                : str(tm.get("continuing_subword_prefix"));
        JsonElement unk = info.get("unk_token_id");
        JsonElement pad = info.get("pad_token_id");
        try {
            decoder = new EntityDecoder(manifest.labels(), TokenDecoders.fromJson(tok.get("decoder")),
                    Vocabulary.fromTokenizerJson(tok), unk == null || unk.isJsonNull() ? null : unk.getAsLong(), prefix);
        } catch (RuntimeException e) {
            throw new PynerException(tokPath, "decoder: " + e.getMessage(), e);
        }
        padId = pad == null || pad.isJsonNull() ? 0 : pad.getAsLong();
        numLabels = manifest.labels().size();
        tokenizer = WindowTokenizer.load(tokPath, manifest.maxLength(), manifest.stride());
        Block block = model.getBlock();
        List<String> names = new ArrayList<>();
        if (block instanceof SymbolBlock) {
            PairList<String, Shape> described = block.describeInput();
            if (described != null) {
                names.addAll(described.keys());
            }
        }
        inputNames = names.isEmpty() ? manifest.inputs() : names;
    }

    @Override
    public NDList processInput(TranslatorContext ctx, String input) {
        List<String> texts = checked(input);
        List<Window> windows = tokenizer.encode(texts).get(0);
        int[] lengths = windows.stream().mapToInt(Window::length).toArray();
        // One batch, rows in the Python runtime's order (longest first, stable).
        int[] order = Batches.plan(lengths, Integer.MAX_VALUE, Integer.MAX_VALUE).get(0);
        int n = windows.size();
        int longest = lengths[order[0]];
        long[] ids = new long[n * longest];
        long[] mask = new long[n * longest];
        long[] types = new long[n * longest];
        Arrays.fill(ids, padId);
        for (int r = 0; r < n; r++) {
            Window w = windows.get(order[r]);
            System.arraycopy(w.inputIds(), 0, ids, r * longest, w.length());
            Arrays.fill(mask, r * longest, r * longest + w.length(), 1L);
            System.arraycopy(w.typeIds(), 0, types, r * longest, w.length());
        }
        NDManager m = ctx.getNDManager();
        Shape shape = new Shape(n, longest);
        NDList list = new NDList();
        for (String name : inputNames) {
            long[] data;
            if ("input_ids".equals(name)) {
                data = ids;
            } else if ("attention_mask".equals(name)) {
                data = mask;
            } else if ("token_type_ids".equals(name)) {
                data = types;
            } else {
                throw new IllegalArgumentException("model input '" + name + "' is not one pyner feeds");
            }
            NDArray a = m.create(data, shape);
            a.setName(name);
            list.add(a);
        }
        ctx.setAttachment("text", input);
        ctx.setAttachment("windows", windows);
        ctx.setAttachment("order", order);
        return list;
    }

    @Override
    @SuppressWarnings("unchecked")
    public Entity[] processOutput(TranslatorContext ctx, NDList list) {
        String text = (String) ctx.getAttachment("text");
        List<Window> windows = (List<Window>) ctx.getAttachment("windows");
        int[] order = (int[]) ctx.getAttachment("order");
        NDArray scores = list.get("scores");
        if (scores == null) {
            scores = list.get(0);
        }
        long[] shape = scores.getShape().getShape();
        if (shape.length != 3 || shape[0] != windows.size() || shape[2] != numLabels) {
            throw new IllegalStateException("model output 'scores' has shape " + scores.getShape()
                    + ", expected (" + windows.size() + ", tokens, " + numLabels + ")");
        }
        float[] flat = scores.toType(ai.djl.ndarray.types.DataType.FLOAT32, false).toFloatArray();
        int longest = (int) shape[1];
        List<float[][]> perWindow = new ArrayList<>(Collections.nCopies(windows.size(), (float[][]) null));
        for (int r = 0; r < order.length; r++) {
            int len = windows.get(order[r]).length();
            float[][] rows = new float[len][];
            for (int t = 0; t < len; t++) {
                int from = (r * longest + t) * numLabels;
                rows[t] = Arrays.copyOfRange(flat, from, from + numLabels);
            }
            perWindow.set(order[r], rows);
        }
        List<Entity> entities = decoder.decodeText(new TextIndex(text), windows, perWindow, strategy, null);
        return entities.toArray(new Entity[0]);
    }

    private static List<String> checked(String input) {
        if (input == null) {
            throw new IllegalArgumentException("texts[0] is null, not a String");
        }
        int bad = TextIndex.loneSurrogate(input);
        if (bad >= 0) {
            throw new IllegalArgumentException("texts[0] has a lone surrogate at UTF-16 index " + bad);
        }
        return List.of(input);
    }

    private static String str(JsonElement e) {
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }
}
