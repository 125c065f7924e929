package dev.pyner;

import java.util.List;
import java.util.Map;

/**
 * A text, the windows of it that ran, and per window the per-text graph outputs fetched for it
 * (text classification: {@code logits}, {@code scores}, float32 {@code [num_labels]}; feature
 * extraction: {@code embeddings}, float32 {@code [dim]}). What text classification and embeddings
 * are computed from, and what golden fixtures and parity reports compare. Arrays are shared: do not
 * modify them.
 */
public final class TextOutputs {

    private final String text;
    private final List<TokenWindow> windows;
    private final List<Map<String, float[]>> outputs;

    /**
     * Creates the outputs of one text.
     *
     * @param text the text
     * @param windows the windows that ran (all of the text's, or its first only)
     * @param outputs per window, output name to its float32 row
     */
    public TextOutputs(String text, List<TokenWindow> windows, List<Map<String, float[]>> outputs) {
        if (windows.size() != outputs.size()) {
            throw new IllegalArgumentException("one output map per window is required");
        }
        this.text = text;
        this.windows = List.copyOf(windows);
        this.outputs = List.copyOf(outputs);
    }

    /** @return the text */
    public String text() {
        return text;
    }

    /** @return the windows that ran */
    public List<TokenWindow> windows() {
        return windows;
    }

    /**
     * One window's output.
     *
     * @param window window index
     * @param name output name (logits, scores, embeddings)
     * @return its float32 row (shared array)
     * @throws IllegalArgumentException when that output was not fetched
     */
    public float[] output(int window, String name) {
        float[] v = outputs.get(window).get(name);
        if (v == null) {
            throw new IllegalArgumentException("output '" + name + "' was not fetched (fetched: " + outputs.get(window).keySet() + ")");
        }
        return v;
    }

    /**
     * Every window's output of one name, in window order.
     *
     * @param name output name
     * @return per window its row
     */
    public List<float[]> outputs(String name) {
        return java.util.stream.IntStream.range(0, windows.size()).mapToObj(w -> output(w, name)).toList();
    }
}
