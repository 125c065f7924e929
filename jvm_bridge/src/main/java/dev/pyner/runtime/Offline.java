package dev.pyner.runtime;

/**
 * Keeps DJL offline: sets the system properties DJL reads ({@code ai.djl.offline}, {@code offline},
 * {@code DJL_OFFLINE}, {@code OPT_OUT_TRACKING}) unless the user set them, so that DJL neither
 * calls its telemetry/metadata endpoints nor tries downloads. Environment variables DJL_OFFLINE and
 * OPT_OUT_TRACKING, when set, still take precedence in DJL.
 */
public final class Offline {

    private Offline() {}

    /** Sets the offline properties (idempotent). Called by every pyner entry point before DJL is touched. */
    public static void enforce() {
        setIfAbsent("ai.djl.offline", "true");
        setIfAbsent("offline", "true");
        setIfAbsent("DJL_OFFLINE", "true");
        setIfAbsent("OPT_OUT_TRACKING", "true");
    }

    private static void setIfAbsent(String key, String value) {
        if (System.getProperty(key) == null) {
            System.setProperty(key, value);
        }
    }
}
