package dev.pyner.runtime;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;

/** {@code pyner.runtime.plan_batches}, identically. */
public final class Batches {

    /** Python's DEFAULT_BATCH_SIZE. */
    public static final int DEFAULT_BATCH_SIZE = 32;
    /** Python's DEFAULT_MAX_BATCH_TOKENS. */
    public static final int DEFAULT_MAX_BATCH_TOKENS = 8192;

    private Batches() {}

    /**
     * Groups window indices into batches: longest first (stable), at most {@code batchSize} per
     * batch and at most {@code maxBatchTokens} padded tokens (count x longest); a window longer than
     * the budget runs alone.
     *
     * @param lengths window lengths
     * @param batchSize maximum windows per batch
     * @param maxBatchTokens maximum padded tokens per batch
     * @return batches of indices into {@code lengths}
     */
    public static List<int[]> plan(int[] lengths, int batchSize, int maxBatchTokens) {
        Integer[] order = new Integer[lengths.length];
        for (int i = 0; i < order.length; i++) {
            order[i] = i;
        }
        Arrays.sort(order, Comparator.comparingInt(i -> -lengths[i])); // stable, as Python's sorted
        List<int[]> batches = new ArrayList<>();
        List<Integer> current = new ArrayList<>();
        int longest = 0;
        for (int i : order) {
            if (!current.isEmpty() && (current.size() >= batchSize || (long) (current.size() + 1) * longest > maxBatchTokens)) {
                batches.add(toArray(current));
                current.clear();
            }
            if (current.isEmpty()) {
                longest = lengths[i];
            }
            current.add(i);
        }
        if (!current.isEmpty()) {
            batches.add(toArray(current));
        }
        return batches;
    }

    private static int[] toArray(List<Integer> l) {
        int[] a = new int[l.size()];
        for (int i = 0; i < a.length; i++) {
            a[i] = l.get(i);
        }
        return a;
    }
}
