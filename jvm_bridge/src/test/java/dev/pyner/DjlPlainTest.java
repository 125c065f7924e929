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
import java.util.ArrayList;
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
            List<GoldenCases.Case> cases = GoldenCases.read(artifact);
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
                    for (GoldenCases.Case c : cases) {
                        NamedEntity[] got = predictor.predict(c.text);
                        classify(artifact.getFileName().toString(), s, c, got);
                    }
                }
            }
        }
        assertEquals(6, families, "one fp32 artifact per family");
        // The same model and tokenizer run in DJL: on single-window texts its per-token (none)
        // labels, spans and scores are the reference's; only the words of [UNK]/unknown tokens may differ.
        int[] none = COUNTS.get("none");
        assertTrue(none[0] > 0);
        assertEquals(0, none[3], "plain DJL 'none' labels/spans differ on single-window texts: " + EXAMPLES);
    }

    /** counts per strategy: cases, identical, truncated (multi-window), span/label differs, word differs only, score differs only. */
    static void classify(String artifact, AggregationStrategy s, GoldenCases.Case c, NamedEntity[] got) {
        int[] n = COUNTS.computeIfAbsent(s.wireName(), k -> new int[6]);
        n[0]++;
        JsonArray want = c.entities(s);
        if (c.windows > 1) {
            n[2]++; // DJL keeps the first max_length tokens only
            return;
        }
        if (!sameSpans(got, want)) {
            n[3]++;
            if (EXAMPLES.size() < 12) {
                EXAMPLES.add(cut(artifact + " " + s + " " + c.id + ": DJL " + describe(got) + " vs reference " + want));
            }
        } else if (!sameWords(got, want)) {
            n[4]++;
            UNK_WORDS.merge(s.wireName(), unkOnly(got, want) ? 1 : 0, Integer::sum);
            if (EXAMPLES.size() < 24) {
                EXAMPLES.add(cut(artifact + " " + s + " " + c.id + " (word): DJL " + describe(got) + " vs reference " + want));
            }
        } else if (!sameScores(got, want, 1e-5)) {
            n[5]++;
        } else {
            n[1]++;
        }
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

    static boolean sameSpans(NamedEntity[] got, JsonArray want) {
        if (got.length != want.size()) {
            return false;
        }
        for (int i = 0; i < got.length; i++) {
            JsonObject w = want.get(i).getAsJsonObject();
            String label = w.has("entity_group") ? w.get("entity_group").getAsString() : w.get("entity").getAsString();
            if (!got[i].getEntity().equals(label) || got[i].getStart() != w.get("start").getAsInt()
                    || got[i].getEnd() != w.get("end").getAsInt()) {
                return false;
            }
        }
        return true;
    }

    static boolean sameWords(NamedEntity[] got, JsonArray want) {
        for (int i = 0; i < got.length; i++) {
            if (!got[i].getWord().equals(want.get(i).getAsJsonObject().get("word").getAsString())) {
                return false;
            }
        }
        return true;
    }

    static boolean sameScores(NamedEntity[] got, JsonArray want, double tol) {
        for (int i = 0; i < got.length; i++) {
            if (!(Math.abs(got[i].getScore() - want.get(i).getAsJsonObject().get("score").getAsDouble()) <= tol)) {
                return false;
            }
        }
        return true;
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
