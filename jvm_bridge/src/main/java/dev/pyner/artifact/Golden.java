package dev.pyner.artifact;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.pyner.PynerException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * The golden fixtures {@code golden.json} as the artifact stores them: per case its id, text,
 * windows and the task's results (docs/tasks.md). Token classification: windows with token ids, type
 * ids, offsets, special-token masks, labels and scores, and entities per strategy in the pipeline's
 * JSON form. Text classification: every window with its {@code logits} and {@code scores}, and
 * {@code classification} = the full ranked labels per long_text mode. Feature extraction: the first
 * window (without outputs) and the {@code embedding}. Only the file format: running a model against
 * them is {@code dev.pyner.Comparison}'s job.
 */
public final class Golden {

    /** The newest golden format this library reads. */
    public static final int FORMAT_VERSION = 1;

    private final Path path;
    private final List<Case> cases;

    private Golden(Path path, List<Case> cases) {
        this.path = path;
        this.cases = cases;
    }

    /**
     * One golden case.
     *
     * @param id the case id
     * @param text the text
     * @param windows per window, the golden window object (input_ids, type_ids, offsets,
     *     special_tokens_mask, and the task's outputs: labels and scores; logits and scores; none)
     * @param entities token classification: strategy wire name to its entities (the pipeline's JSON
     *     form); empty for the other tasks
     * @param classification text classification: long_text mode ("truncate", "average") to the full
     *     ranked list of {@code {"label", "score"}}; empty for the other tasks
     * @param embedding feature extraction: the float32 embedding; null for the other tasks
     */
    public record Case(String id, String text, JsonArray windows, JsonObject entities, JsonObject classification,
                       JsonArray embedding) {

        /**
         * A token-classification case.
         *
         * @param id the case id
         * @param text the text
         * @param windows the golden windows
         * @param entities strategy wire name to its entities
         */
        public Case(String id, String text, JsonArray windows, JsonObject entities) {
            this(id, text, windows, entities, new JsonObject(), null);
        }

        /**
         * @param mode a long_text wire name (truncate, average)
         * @return its golden ranked labels, or null when the case has none for it
         */
        public JsonArray classification(String mode) {
            return classification.has(mode) ? classification.getAsJsonArray(mode) : null;
        }

        /**
         * @param strategy a strategy's wire name (none, simple, ...)
         * @return its golden entities, or null when the case has none for it
         */
        public JsonArray entities(String strategy) {
            return entities.has(strategy) ? entities.getAsJsonArray(strategy) : null;
        }
    }

    /**
     * Reads {@code folder/golden.json}.
     *
     * @param folder the artifact folder
     * @return the fixtures
     * @throws PynerException when missing, not JSON, newer than supported, or without cases
     */
    public static Golden read(Path folder) throws PynerException {
        Path path = folder.resolve(Manifest.GOLDEN_FILE);
        JsonObject o = Manifest.readJsonObject(path);
        int version = o.has("format_version") ? o.get("format_version").getAsInt() : 0;
        if (version > FORMAT_VERSION) {
            throw new PynerException(path, "golden format " + version + " is newer than this pyner-jvm supports (" + FORMAT_VERSION + ")");
        }
        if (!o.has("cases") || !o.get("cases").isJsonArray() || o.getAsJsonArray("cases").size() == 0) {
            throw new PynerException(path, "holds no golden cases");
        }
        List<Case> cases = new ArrayList<>();
        try {
            for (JsonElement e : o.getAsJsonArray("cases")) {
                JsonObject c = e.getAsJsonObject();
                cases.add(new Case(c.get("id").getAsString(), c.get("text").getAsString(), c.getAsJsonArray("windows"),
                        c.has("entities") ? c.getAsJsonObject("entities") : new JsonObject(),
                        c.has("classification") ? c.getAsJsonObject("classification") : new JsonObject(),
                        c.has("embedding") && !c.get("embedding").isJsonNull() ? c.getAsJsonArray("embedding") : null));
            }
        } catch (ClassCastException | IllegalStateException | NullPointerException e) {
            throw new PynerException(path, "malformed golden case (" + e + ")", e);
        }
        return new Golden(path, Collections.unmodifiableList(cases));
    }

    /** @return the golden.json path */
    public Path path() {
        return path;
    }

    /** @return the cases, in file order */
    public List<Case> cases() {
        return cases;
    }

    /** @return the case texts, in file order */
    public List<String> texts() {
        return cases.stream().map(Case::text).toList();
    }

    /** @return the case ids, in file order */
    public List<String> ids() {
        return cases.stream().map(Case::id).toList();
    }
}
