package dev.pyner;

import java.util.Objects;

/**
 * One label of a text-classification result and its float32 score (the keys {@code label}, {@code
 * score} of transformers' pipeline with {@code top_k}). Immutable.
 *
 * @param label the label (the manifest's labels, id2label order)
 * @param score its score: the manifest's function_to_apply of the logits, float32
 */
public record LabelScore(String label, float score) {

    /**
     * Creates a label score.
     *
     * @param label the label, not null
     * @param score the score
     */
    public LabelScore {
        Objects.requireNonNull(label, "label");
    }

    @Override
    public String toString() {
        return label + "=" + score;
    }
}
