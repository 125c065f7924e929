package dev.pyner;

import java.util.List;

/**
 * A text, its windows and the model's per-token scores for each window: everything entity
 * decoding needs, and what parity reports compare. Arrays are shared: do not modify them.
 */
public final class ScoredText {

    private final String text;
    private final List<TokenWindow> windows;
    private final List<float[][]> scores;

    /**
     * Creates a scored text.
     *
     * @param text the text
     * @param windows its windows
     * @param scores per window, float32 probabilities {@code [tokens][labels]}
     */
    public ScoredText(String text, List<TokenWindow> windows, List<float[][]> scores) {
        if (windows.size() != scores.size()) {
            throw new IllegalArgumentException("one score block per window is required");
        }
        this.text = text;
        this.windows = List.copyOf(windows);
        this.scores = List.copyOf(scores);
    }

    /** @return the text */
    public String text() {
        return text;
    }

    /** @return the windows: the encoding followed by its overflowing encodings */
    public List<TokenWindow> windows() {
        return windows;
    }

    /** @return per window, the float32 scores {@code [tokens][labels]} */
    public List<float[][]> scores() {
        return scores;
    }

    /**
     * Per-token argmax class ids of one window (first maximum; NaN counts as the maximum, as numpy).
     *
     * @param window window index
     * @return class ids
     */
    public int[] labels(int window) {
        float[][] s = scores.get(window);
        int[] out = new int[s.length];
        for (int t = 0; t < s.length; t++) {
            out[t] = dev.pyner.decode.EntityDecoder.argmax(s[t]);
        }
        return out;
    }
}
