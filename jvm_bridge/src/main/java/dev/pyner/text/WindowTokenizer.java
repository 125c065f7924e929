package dev.pyner.text;

import ai.djl.huggingface.tokenizers.Encoding;
import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.djl.huggingface.tokenizers.jni.CharSpan;
import dev.pyner.PynerException;
import dev.pyner.PynerInferenceException;
import dev.pyner.TokenWindow;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The artifact's tokenizer through DJL: truncation at max_length with stride ({@code
 * longest_first}, right), no padding, and every text's windows = its encoding followed by the
 * overflowing encodings, exactly as the Python runtime asks the {@code tokenizers} library.
 * Thread-safe (the native tokenizer is immutable after construction).
 */
public final class WindowTokenizer implements AutoCloseable {

    private final HuggingFaceTokenizer tokenizer;
    private final int maxLength;
    private final int stride;

    private WindowTokenizer(HuggingFaceTokenizer tokenizer, int maxLength, int stride) {
        this.tokenizer = tokenizer;
        this.maxLength = maxLength;
        this.stride = stride;
    }

    /**
     * Loads {@code tokenizer.json}.
     *
     * @param path the tokenizer.json file
     * @param maxLength tokens per window, special tokens included
     * @param stride overlap between windows, tokens
     * @return the tokenizer
     * @throws PynerException naming the file when DJL cannot load it
     */
    public static WindowTokenizer load(Path path, int maxLength, int stride) throws PynerException {
        Map<String, String> options = new HashMap<>();
        options.put("addSpecialTokens", "true");
        options.put("withOverflowingTokens", "true");
        options.put("truncation", "LONGEST_FIRST");
        options.put("padding", "false");
        options.put("maxLength", Integer.toString(maxLength));
        options.put("modelMaxLength", Integer.toString(maxLength));
        options.put("stride", Integer.toString(stride));
        options.put("doLowerCase", "false");
        try (InputStream in = Files.newInputStream(path)) {
            HuggingFaceTokenizer tok = HuggingFaceTokenizer.newInstance(in, options);
            if (tok.getMaxLength() != maxLength || tok.getStride() != stride) {
                tok.close();
                throw new PynerException(path, "DJL did not accept max_length " + maxLength + " / stride " + stride);
            }
            return new WindowTokenizer(tok, maxLength, stride);
        } catch (IOException | RuntimeException e) {
            throw new PynerException(path, "cannot be loaded by DJL's HuggingFaceTokenizer (" + e + ")", e);
        }
    }

    /** @return tokens per window */
    public int maxLength() {
        return maxLength;
    }

    /** @return overlap between windows */
    public int stride() {
        return stride;
    }

    /**
     * Tokenizes texts into windows.
     *
     * @param texts texts (non-null, no lone surrogates: checked by the caller)
     * @return per text, its windows
     */
    public List<List<TokenWindow>> encode(List<String> texts) {
        if (texts.isEmpty()) {
            return List.of();
        }
        Encoding[] encodings;
        try {
            encodings = tokenizer.batchEncode(texts.toArray(new String[0]), true, true);
        } catch (RuntimeException e) {
            throw new PynerInferenceException("tokenizer failed: " + e.getMessage(), e);
        }
        List<List<TokenWindow>> out = new ArrayList<>(texts.size());
        for (Encoding enc : encodings) {
            Encoding[] overflow = enc.getOverflowing();
            List<TokenWindow> windows = new ArrayList<>(1 + overflow.length);
            windows.add(window(enc));
            for (Encoding o : overflow) {
                windows.add(window(o));
            }
            out.add(windows);
        }
        return out;
    }

    private static TokenWindow window(Encoding e) {
        long[] ids = e.getIds();
        long[] special = e.getSpecialTokenMask();
        CharSpan[] spans = e.getCharTokenSpans();
        int n = ids.length;
        int[] starts = new int[n];
        int[] ends = new int[n];
        int[] mask = new int[n];
        for (int i = 0; i < n; i++) {
            CharSpan s = spans[i];
            if (s != null) {
                starts[i] = s.getStart();
                ends[i] = s.getEnd();
            }
            mask[i] = (int) special[i];
        }
        return new TokenWindow(ids, e.getTypeIds(), starts, ends, mask, e.getTokens());
    }

    @Override
    public void close() {
        tokenizer.close();
    }
}
