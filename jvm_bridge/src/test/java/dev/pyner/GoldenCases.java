package dev.pyner;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Test-side reader of golden.json: the Python runtime's outputs, the oracle of the JVM tests. */
final class GoldenCases {

    /** One golden case. */
    static final class Case {
        final String id;
        final String text;
        final int windows;
        final JsonObject entities;

        Case(String id, String text, int windows, JsonObject entities) {
            this.id = id;
            this.text = text;
            this.windows = windows;
            this.entities = entities;
        }

        JsonArray entities(AggregationStrategy s) {
            return entities.getAsJsonArray(s.wireName());
        }
    }

    private GoldenCases() {}

    static List<Case> read(Path artifact) {
        try {
            JsonObject g = JsonParser.parseString(Files.readString(artifact.resolve("golden.json"), StandardCharsets.UTF_8))
                    .getAsJsonObject();
            List<Case> out = new ArrayList<>();
            for (JsonElement e : g.getAsJsonArray("cases")) {
                JsonObject c = e.getAsJsonObject();
                out.add(new Case(c.get("id").getAsString(), c.get("text").getAsString(),
                        c.getAsJsonArray("windows").size(), c.getAsJsonObject("entities")));
            }
            return out;
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    /**
     * Compares entities with golden ones: label, start, end, word (and index) exactly, score within tol.
     *
     * @return null when equal, else the first difference
     */
    static String diff(List<Entity> got, JsonArray want, double tol) {
        if (got.size() != want.size()) {
            return got.size() + " entities, golden has " + want.size() + ": " + got + " vs " + want;
        }
        for (int i = 0; i < got.size(); i++) {
            Entity g = got.get(i);
            JsonObject w = want.get(i).getAsJsonObject();
            String label = w.has("entity_group") ? w.get("entity_group").getAsString() : w.get("entity").getAsString();
            if (!g.label().equals(label) || g.start() != w.get("start").getAsInt() || g.end() != w.get("end").getAsInt()
                    || !g.word().equals(w.get("word").getAsString())
                    || (w.has("index") && g.index().orElse(-1) != w.get("index").getAsInt())
                    || !(Math.abs(g.score() - w.get("score").getAsDouble()) <= tol)) {
                return "[" + i + "] " + g + " vs golden " + w;
            }
        }
        return null;
    }
}
