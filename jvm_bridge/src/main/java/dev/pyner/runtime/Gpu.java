package dev.pyner.runtime;

import ai.onnxruntime.OrtEnvironment;
import ai.onnxruntime.OrtProvider;
import java.util.EnumSet;
import java.util.logging.Logger;

/**
 * Devices ("cpu", "cuda", "cuda:N") and what a CUDA device needs of ONNX Runtime Java, checked in
 * the order Python checks them: the GPU build, then its CUDA libraries, then the device id.
 */
public final class Gpu {

    /** The logger of the one fallback warning per model load. */
    public static final Logger LOG = Logger.getLogger("dev.pyner");

    /** What a user on the CPU build does to get CUDA. */
    public static final String GPU_BUILD_HINT = "use the GPU build: com.microsoft.onnxruntime:onnxruntime_gpu:"
            + "<same version> in place of com.microsoft.onnxruntime:onnxruntime (exclude it from dev.pyner:pyner-jvm; "
            + "jvm_bridge: mvn -P gpu); see docs/jvm.md, GPU";

    /** What a user whose GPU build cannot load its CUDA provider checks. */
    public static final String CUDA_LIBS_HINT = "onnxruntime_gpu needs the CUDA and cuDNN libraries of the major "
            + "versions it was built for on the library path (LD_LIBRARY_PATH) and an NVIDIA driver; see docs/jvm.md, GPU";

    private Gpu() {}

    /**
     * Parses a device.
     *
     * @param spec {@code cpu}, {@code cuda} (= {@code cuda:0}) or {@code cuda:N}
     * @return the CUDA device id, or -1 for the CPU
     * @throws IllegalArgumentException for anything else
     */
    public static int parseDevice(String spec) {
        String s = spec == null ? "" : spec.trim().toLowerCase(java.util.Locale.ROOT);
        if (s.equals("cpu")) {
            return -1;
        }
        if (s.equals("cuda")) {
            return 0;
        }
        if (s.startsWith("cuda:") && s.length() > 5 && s.substring(5).chars().allMatch(Character::isDigit) && s.length() < 12) {
            return Integer.parseInt(s.substring(5));
        }
        throw new IllegalArgumentException("device " + (spec == null ? "null" : "'" + spec + "'")
                + ": use cpu, cuda or cuda:N (N a device id, 0 first)");
    }

    /**
     * The name of a device id.
     *
     * @param cudaId a CUDA device id, or -1
     * @return "cpu" or "cuda:N"
     */
    public static String deviceName(int cudaId) {
        return cudaId < 0 ? "cpu" : "cuda:" + cudaId;
    }

    /**
     * Why the CUDA provider of this (GPU) build cannot be added to a session, or null when it can
     * (the CUDA libraries load). The device id itself is checked only when a session is created.
     *
     * @param cudaId the device asked for
     * @return null, or the reason
     */
    public static String cudaProviderProblem(int cudaId) {
        OnnxScorer.environment();
        try (ai.onnxruntime.OrtSession.SessionOptions so = new ai.onnxruntime.OrtSession.SessionOptions()) {
            so.addCUDA(cudaId);
            return null;
        } catch (ai.onnxruntime.OrtException | LinkageError e) {
            return "device " + deviceName(cudaId) + ": the CUDA libraries that onnxruntime_gpu "
                    + OnnxScorer.environment().getVersion() + " needs cannot be loaded (" + e.getMessage() + "); " + CUDA_LIBS_HINT;
        }
    }

    /**
     * Why this ONNX Runtime Java cannot run on CUDA at all, or null when it is the GPU build.
     *
     * @param cudaId the device asked for
     * @return null, or the reason (naming the GPU build and the providers this one has)
     */
    public static String missingGpuBuild(int cudaId) {
        EnumSet<OrtProvider> available = OrtEnvironment.getAvailableProviders();
        if (available.contains(OrtProvider.CUDA)) {
            return null;
        }
        return "device " + deviceName(cudaId) + ": this ONNX Runtime Java " + OnnxScorer.environment().getVersion()
                + " is not the GPU build (com.microsoft.onnxruntime:onnxruntime_gpu): CUDA is not among its providers "
                + available + "; " + GPU_BUILD_HINT;
    }
}
