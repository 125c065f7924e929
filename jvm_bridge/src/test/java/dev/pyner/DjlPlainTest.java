package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import ai.djl.inference.Predictor;
import ai.djl.modality.nlp.translator.NamedEntity;
import ai.djl.repository.zoo.Criteria;
import ai.djl.repository.zoo.ZooModel;
import ai.djl.translate.DeferredTranslatorFactory;
import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import dev.pyner.artifact.Golden;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.Set;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * The artifact in plain DJL, with zero pyner code: Criteria with the folder and the OnnxRuntime
 * engine; serving.properties names DJL's TokenClassificationTranslatorFactory and its arguments
 * (softmax=false, maxLength, includeTokenTypes). The test proves it loads and runs for every family,
 * then MEASURES where DJL's own decoding differs from the reference (the golden entities the Python
 * runtime computed) for every strategy, and writes the counts to target/djl-differences.md (copied
 * into docs/jvm.md).
 */
class DjlPlainTest {

    static final Map<String, int[]> COUNTS = new LinkedHashMap<>();
    static final List<String> EXAMPLES = new ArrayList<>();
    static final Map<String, Integer> UNK_WORDS = new LinkedHashMap<>();

    @Test
    void plainDjlLoadsEveryFamilyAndItsDifferencesAreMeasured() throws Exception {
        int families = 0;
        for (Path artifact : TestArtifacts.long64()) {
            families++;
            List<Golden.Case> cases = Golden.read(artifact).cases();
            for (AggregationStrategy s : AggregationStrategy.values()) {
                Criteria<String, NamedEntity[]> criteria = Criteria.builder()
                        .setTypes(String.class, NamedEntity[].class)
                        .optModelPath(artifact)
                        .optEngine("OnnxRuntime")
                        .optTranslatorFactory(new DeferredTranslatorFactory()) // uses serving.properties' translatorFactory
                        .optArgument("aggregation_strategy", s.wireName())
                        .build();
                try (ZooModel<String, NamedEntity[]> model = criteria.loadModel();
                     Predictor<String, NamedEntity[]> predictor = model.newPredictor()) {
                    for (Golden.Case c : cases) {
                        NamedEntity[] got = predictor.predict(c.text());
                        classify(artifact.getFileName().toString(), s, c, got);
                    }
                }
            }
        }
        assertEquals(TestArtifacts.all().stream().filter(p -> p.getFileName().toString().endsWith("-fp32")).count(), families,
                "one fp32 artifact per family");
        // The same model and tokenizer run in DJL: on single-window texts its per-token (none)
        // labels, spans and scores are the reference's; only the words of [UNK]/unknown tokens may differ.
        int[] none = COUNTS.get("none");
        assertTrue(none[0] > 0);
        assertEquals(0, none[3], "plain DJL 'none' labels/spans differ on single-window texts: " + EXAMPLES);
    }

    /** Kinds of difference that mean another label or span (or another number of entities). */
    static final Set<Comparison.Kind> SPAN = EnumSet.of(Comparison.Kind.ENTITY_COUNT, Comparison.Kind.ENTITY_KIND,
            Comparison.Kind.ENTITY_LABEL, Comparison.Kind.ENTITY_START, Comparison.Kind.ENTITY_END, Comparison.Kind.ENTITY_INDEX);

    /** counts per strategy: cases, identical, truncated (multi-window), span/label differs, word differs only, score differs only. */
    static void classify(String artifact, AggregationStrategy s, Golden.Case c, NamedEntity[] got) {
        int[] n = COUNTS.computeIfAbsent(s.wireName(), k -> new int[6]);
        n[0]++;
        JsonArray want = c.entities(s.wireName());
        if (c.windows().size() > 1) {
            n[2]++; // DJL keeps the first max_length tokens only
            return;
        }
        Comparison cmp = new Comparison(1e-5);
        cmp.entities(artifact + " " + s + " " + c.id(), json(got, s), want);
        Set<Comparison.Kind> kinds = cmp.kinds();
        if (!java.util.Collections.disjoint(kinds, SPAN)) {
            n[3]++;
            if (EXAMPLES.size() < 12) {
                EXAMPLES.add(cut(artifact + " " + s + " " + c.id() + ": DJL " + describe(got) + " vs reference " + want));
            }
        } else if (kinds.contains(Comparison.Kind.ENTITY_WORD)) {
            n[4]++;
            UNK_WORDS.merge(s.wireName(), unkOnly(got, want) ? 1 : 0, Integer::sum);
            if (EXAMPLES.size() < 24) {
                EXAMPLES.add(cut(artifact + " " + s + " " + c.id() + " (word): DJL " + describe(got) + " vs reference " + want));
            }
        } else if (kinds.contains(Comparison.Kind.ENTITY_SCORE)) {
            n[5]++;
        } else {
            n[1]++;
        }
    }

    /** DJL's entities in the pipeline's JSON form (token entities with their index for "none"). */
    static JsonArray json(NamedEntity[] es, AggregationStrategy s) {
        JsonArray a = new JsonArray();
        for (NamedEntity e : es) {
            JsonObject o = new JsonObject();
            o.addProperty(s == AggregationStrategy.NONE ? "entity" : "entity_group", e.getEntity());
            o.addProperty("score", e.getScore());
            if (s == AggregationStrategy.NONE) {
                o.addProperty("index", e.getIndex());
            }
            o.addProperty("word", e.getWord());
            o.addProperty("start", e.getStart());
            o.addProperty("end", e.getEnd());
            a.add(o);
        }
        return a;
    }

    /** True when every differing word is DJL writing an unknown token where the reference has the text. */
    static boolean unkOnly(NamedEntity[] got, JsonArray want) {
        for (int i = 0; i < got.length; i++) {
            String g = got[i].getWord();
            if (!g.equals(want.get(i).getAsJsonObject().get("word").getAsString())
                    && !(g.contains("[UNK]") || g.contains("<unk>"))) {
                return false;
            }
        }
        return true;
    }

    /** The first 400 chars, never ending on half a surrogate pair (an unpaired surrogate cannot be written as UTF-8). */
    static String cut(String s) {
        if (s.length() <= 400) {
            return s;
        }
        int end = Character.isHighSurrogate(s.charAt(399)) ? 399 : 400;
        return s.substring(0, end) + " ...";
    }

    static String describe(NamedEntity[] es) {
        List<String> out = new ArrayList<>();
        for (NamedEntity e : es) {
            out.add(e.getEntity() + "[" + e.getStart() + "," + e.getEnd() + ")'" + e.getWord() + "'");
        }
        return out.toString();
    }

    @AfterAll
    static void writeReport() throws IOException {
        StringBuilder sb = new StringBuilder();
        sb.append("| strategy | cases | identical to reference | multi-window (DJL truncates) | label/span differs"
                + " | word differs only (of which DJL wrote the unknown token) | score differs only |\n|---|---|---|---|---|---|---|\n");
        for (Map.Entry<String, int[]> e : COUNTS.entrySet()) {
            int[] n = e.getValue();
            sb.append(String.format(Locale.ROOT, "| %s | %d | %d | %d | %d | %d (%d) | %d |%n", e.getKey(), n[0], n[1], n[2], n[3],
                    n[4], UNK_WORDS.getOrDefault(e.getKey(), 0), n[5]));
        }
        sb.append("\nExamples:\n");
        for (String ex : EXAMPLES) {
            sb.append("- ").append(ex).append('\n');
        }
        Path out = Paths.get("target", "djl-differences.md");
        Files.createDirectories(out.getParent());
        Files.writeString(out, sb.toString(), StandardCharsets.UTF_8);
        System.out.println(sb);
    }
}
