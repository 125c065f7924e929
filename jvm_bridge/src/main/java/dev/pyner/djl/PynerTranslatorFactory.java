package dev.pyner.djl;

import ai.djl.Model;
import ai.djl.translate.TranslateException;
import ai.djl.translate.Translator;
import ai.djl.translate.TranslatorFactory;
import ai.djl.util.Pair;
import dev.pyner.AggregationStrategy;
import dev.pyner.Entity;
import java.io.Serializable;
import java.lang.reflect.Type;
import java.util.Map;
import java.util.Set;

/**
 * Creates {@link PynerTranslator}s for DJL's {@code Criteria}: input {@code String}, output
 * {@code dev.pyner.Entity[]}. The argument {@code aggregation} (or DJL's name {@code
 * aggregation_strategy}) picks the strategy: none, simple (default), first, average, max.
 *
 * <pre>{@code
 * Criteria<String, Entity[]> criteria = Criteria.builder()
 *         .setTypes(String.class, Entity[].class)
 *         .optModelPath(artifactDir)
 *         .optEngine("OnnxRuntime")
 *         .optTranslatorFactory(new PynerTranslatorFactory())
 *         .optArgument("aggregation", "first")
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
        return (Translator<I, O>) new PynerTranslator(strategy);
    }
}
