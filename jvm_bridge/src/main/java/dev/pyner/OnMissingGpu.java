package dev.pyner;

import java.util.Locale;

/**
 * What a model load does when a CUDA device was asked for ({@code optDevice("cuda:N")}) and cannot
 * be used: the GPU build of ONNX Runtime Java is not on the class path, the CUDA libraries it needs
 * cannot be loaded, or the device does not exist. Mirrors Python's {@code on_missing_gpu}.
 */
public enum OnMissingGpu {
    /** Refuse to load: a {@link PynerException} naming what is missing (the default). */
    FAIL,
    /** Load on the CPU instead, after one logged warning naming why (logger {@code dev.pyner}). */
    FALLBACK;

    /**
     * The policy of a wire name.
     *
     * @param name {@code fail} or {@code fallback} (any case)
     * @return the policy
     * @throws IllegalArgumentException for any other name
     */
    public static OnMissingGpu fromName(String name) {
        if (name != null) {
            for (OnMissingGpu p : values()) {
                if (p.wireName().equals(name.toLowerCase(Locale.ROOT))) {
                    return p;
                }
            }
        }
        throw new IllegalArgumentException("on_missing_gpu " + (name == null ? "null" : "'" + name + "'")
                + ": use fail (refuse to load when the GPU cannot be used) or fallback (run on the CPU with one warning)");
    }

    /** @return {@code fail} or {@code fallback}, as Python and the Spark sample spell it */
    public String wireName() {
        return name().toLowerCase(Locale.ROOT);
    }
}
