package dev.pyner.djl;

import ai.djl.Model;
import ai.djl.translate.TranslateException;
import ai.djl.translate.Translator;
import ai.djl.translate.TranslatorFactory;
import ai.djl.util.Pair;
import dev.pyner.AggregationStrategy;
import dev.pyner.Entity;
import dev.pyner.OnMissingGpu;
import dev.pyner.runtime.Gpu;
import java.io.Serializable;
import java.lang.reflect.Type;
import java.util.Map;
import java.util.Set;

/**
 * Creates {@link PynerTranslator}s for DJL's {@code Criteria}: input {@code String}, output
 * {@code dev.pyner.Entity[]}. The argument {@code aggregation} (or DJL's name {@code
 * aggregation_strategy}) picks the strategy: none, simple (default), first, average, max.
 *
 * <p>The device: DJL creates the ONNX Runtime session on the Criteria's device, before any translator
 * exists, so pick it there with {@link #device(String, OnMissingGpu)} (which checks that the GPU can
 * be used and applies the policy), and pass the same choice as the arguments {@code device} ({@code
 * cpu}, {@code cuda}, {@code cuda:N}) and {@code on_missing_gpu} ({@code fail}, the default, or
 * {@code fallback}): the factory then refuses (or, with fallback, warns once about) a model that DJL
 * loaded anywhere else.
 *
 * <pre>{@code
 * Criteria<String, Entity[]> criteria = Criteria.builder()
 *         .setTypes(String.class, Entity[].class)
 *         .optModelPath(artifactDir)
 *         .optEngine("OnnxRuntime")
 *         .optTranslatorFactory(new PynerTranslatorFactory())
 *         .optArgument("aggregation", "first")
 *         .optDevice(PynerTranslatorFactory.device("cuda:0", OnMissingGpu.FALLBACK)) // optional: a GPU
 *         .optArgument("device", "cuda:0").optArgument("on_missing_gpu", "fallback")
 *         .build();
 * }</pre>
 */
public final class PynerTranslatorFactory implements TranslatorFactory, Serializable {

    private static final long serialVersionUID = 1L;

    private static final Set<Pair<Type, Type>> SUPPORTED = Set.of(new Pair<>(String.class, Entity[].class));

    @Override
    public Set<Pair<Type, Type>> getSupportedTypes() {
        return SUPPORTED;
    }

    @Override
    @SuppressWarnings("unchecked")
    public <I, O> Translator<I, O> newInstance(Class<I> input, Class<O> output, Model model, Map<String, ?> arguments)
            throws TranslateException {
        if (input != String.class || output != Entity[].class) {
            throw new TranslateException("PynerTranslatorFactory supports (String, dev.pyner.Entity[]), not ("
                    + input.getName() + ", " + output.getName() + ")");
        }
        Object name = arguments.get("aggregation");
        if (name == null) {
            name = arguments.get("aggregation_strategy");
        }
        AggregationStrategy strategy;
        try {
            strategy = name == null ? AggregationStrategy.SIMPLE : AggregationStrategy.fromName(name.toString());
        } catch (IllegalArgumentException e) {
            throw new TranslateException(e.getMessage(), e);
        }
        checkDevice(model, arguments);
        return (Translator<I, O>) new PynerTranslator(strategy);
    }

    /** The arguments device / on_missing_gpu against the device DJL loaded the model on. */
    private static void checkDevice(Model model, Map<String, ?> arguments) throws TranslateException {
        Object spec = arguments.get("device");
        Object policyName = arguments.get("on_missing_gpu");
        int cudaId;
        OnMissingGpu policy;
        try {
            cudaId = spec == null ? -1 : Gpu.parseDevice(spec.toString());
            policy = policyName == null ? OnMissingGpu.FAIL : OnMissingGpu.fromName(policyName.toString());
        } catch (IllegalArgumentException e) {
            throw new TranslateException(e.getMessage(), e);
        }
        ai.djl.Device loaded = model.getNDManager().getDevice();
        boolean same = cudaId < 0 ? !loaded.isGpu() : loaded.isGpu() && loaded.getDeviceId() == cudaId;
        if (same) {
            return;
        }
        String why = cudaId >= 0 ? Gpu.missingGpuBuild(cudaId) : null;
        if (why == null) {
            why = "device " + Gpu.deviceName(cudaId) + " was asked for (argument device), but DJL loaded the model on "
                    + loaded + ": set the Criteria's device too, .optDevice(PynerTranslatorFactory.device(\""
                    + Gpu.deviceName(cudaId) + "\", ...))";
        }
        if (policy == OnMissingGpu.FAIL || cudaId < 0) {
            throw new TranslateException(why);
        }
        Gpu.LOG.warning(why + "; running on " + loaded + " instead (on_missing_gpu=fallback)");
    }

    /**
     * The DJL device for a pyner device choice, for {@code Criteria.optDevice}: {@code Device.gpu(N)}
     * when this ONNX Runtime Java is the GPU build and its CUDA provider loads; otherwise {@code
     * FAIL} throws naming what is missing and {@code FALLBACK} logs one warning (logger {@code
     * dev.pyner}) and returns {@code Device.cpu()}.
     *
     * @param device cpu, cuda or cuda:N
     * @param policy what a CUDA device that cannot be used does
     * @return the device to load on
     * @throws IllegalArgumentException for a device that is not cpu, cuda or cuda:N
     * @throws IllegalStateException (FAIL) naming the GPU build or the CUDA libraries that are missing
     */
    public static ai.djl.Device device(String device, OnMissingGpu policy) {
        int cudaId = Gpu.parseDevice(device);
        if (cudaId < 0) {
            return ai.djl.Device.cpu();
        }
        String why = Gpu.missingGpuBuild(cudaId);
        if (why == null) {
            why = Gpu.cudaProviderProblem(cudaId);
        }
        if (why == null) {
            return ai.djl.Device.gpu(cudaId);
        }
        if (policy != OnMissingGpu.FALLBACK) {
            throw new IllegalStateException(why);
        }
        Gpu.LOG.warning(why + "; running on the CPU instead (on_missing_gpu=fallback)");
        return ai.djl.Device.cpu();
    }
}
