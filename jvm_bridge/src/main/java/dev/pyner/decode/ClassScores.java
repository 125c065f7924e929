package dev.pyner.decode;

import dev.pyner.LabelScore;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Text classification's arithmetic, bit for bit as {@code pyner.tasks} (docs/tasks.md): the
 * {@code long_text="average"} scores of several windows, and the pipeline's ranking.
 */
public final class ClassScores {

    /** function_to_apply: softmax over the classes. */
    public static final String SOFTMAX = "softmax";
    /** function_to_apply: a sigmoid per class (multi-label, one label). */
    public static final String SIGMOID = "sigmoid";
    /** function_to_apply: the logits themselves (regression). */
    public static final String NONE = "none";

    private ClassScores() {}

    /**
     * Checks a function_to_apply name.
     *
     * @param function softmax, sigmoid or none (null: none)
     * @return the name
     * @throws IllegalArgumentException for any other
     */
    public static String checkFunction(String function) {
        if (function == null) {
            return NONE;
        }
        if (!function.equals(SOFTMAX) && !function.equals(SIGMOID) && !function.equals(NONE)) {
            throw new IllegalArgumentException("function_to_apply '" + function + "' is not softmax, sigmoid or none");
        }
        return function;
    }

    /**
     * The scores of a text from its windows' logits ({@code long_text="average"} with several windows):
     * mean logit {@code j} = float32(sum over windows in order of float64(logit[w][j]) / n); softmax:
     * {@code m} = the largest mean, {@code e_j = exp(mean_j - m)} in float64 ({@link StrictMath#exp}),
     * {@code s} = the sum of the {@code e_j} in class order, score = float32(e_j / s); sigmoid:
     * float32(1 / (1 + exp(-mean_j))); none: the means.
     *
     * @param windowLogits per window, its float32 logits (one per class), in window order
     * @param function softmax, sigmoid or none
     * @return float32 scores in class order
     */
    public static float[] average(List<float[]> windowLogits, String function) {
        String f = checkFunction(function);
        int n = windowLogits.size();
        if (n == 0) {
            throw new IllegalArgumentException("no windows to average");
        }
        int classes = windowLogits.get(0).length;
        double[] means = new double[classes];
        for (int j = 0; j < classes; j++) {
            double total = 0.0;
            for (float[] w : windowLogits) {
                total += (double) w[j];
            }
            means[j] = (float) (total / n);
        }
        float[] out = new float[classes];
        if (f.equals(SOFTMAX)) {
            double top = Double.NEGATIVE_INFINITY;
            for (double m : means) {
                top = Math.max(top, m); // Python's max(): NaN handling aside, the same largest value
            }
            double[] exps = new double[classes];
            double total = 0.0;
            for (int j = 0; j < classes; j++) {
                exps[j] = StrictMath.exp(means[j] - top);
            }
            for (double e : exps) {
                total += e;
            }
            for (int j = 0; j < classes; j++) {
                out[j] = (float) (exps[j] / total);
            }
        } else if (f.equals(SIGMOID)) {
            for (int j = 0; j < classes; j++) {
                out[j] = (float) (1.0 / (1.0 + StrictMath.exp(-means[j])));
            }
        } else {
            for (int j = 0; j < classes; j++) {
                out[j] = (float) means[j];
            }
        }
        return out;
    }

    /**
     * Labels by score, highest first, ties in class order (Python's stable sort, as the pipeline), the
     * first {@code topK}.
     *
     * @param scores float32 scores in class order
     * @param labels labels by class id
     * @param topK how many (0: all; more than the labels: all)
     * @return the ranked labels
     * @throws IllegalArgumentException when {@code topK} is negative or the sizes differ
     */
    public static List<LabelScore> rank(float[] scores, List<String> labels, int topK) {
        if (topK < 0) {
            throw new IllegalArgumentException("top_k " + topK + " must be >= 0 (0: every label)");
        }
        if (scores.length != labels.size()) {
            throw new IllegalArgumentException(scores.length + " scores for " + labels.size() + " labels");
        }
        int k = topK == 0 ? scores.length : Math.min(topK, scores.length);
        Integer[] order = new Integer[scores.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        // Python: sorted(range(n), key=lambda i: -scores[i]): only "<" between the negated floats, stable.
        Arrays.sort(order, (a, b) -> {
            double x = -(double) scores[a];
            double y = -(double) scores[b];
            return x < y ? -1 : (y < x ? 1 : 0);
        });
        List<LabelScore> out = new ArrayList<>(k);
        for (int r = 0; r < k; r++) {
            out.add(new LabelScore(labels.get(order[r]), scores[order[r]]));
        }
        return List.copyOf(out);
    }
}
