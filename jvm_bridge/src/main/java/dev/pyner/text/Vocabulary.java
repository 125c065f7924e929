package dev.pyner.text;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import java.util.Map;

/**
 * id -> token string from tokenizer.json, as the Rust tokenizer's {@code id_to_token} (and so
 * transformers' {@code convert_ids_to_tokens}): added tokens first, then the model's vocabulary
 * (WordPiece/BPE/WordLevel {@code vocab} objects, Unigram {@code [[piece, score], ...]} lists).
 * An encoding's token strings are not always these (a Unigram unknown piece keeps its text).
 */
public final class Vocabulary {

    private final String[] tokens;

    private Vocabulary(String[] tokens) {
        this.tokens = tokens;
    }

    /**
     * Reads the vocabulary of a parsed tokenizer.json.
     *
     * @param tokenizerJson the parsed file
     * @return the vocabulary
     * @throws IllegalArgumentException when the model has no vocabulary pyner understands
     */
    public static Vocabulary fromTokenizerJson(JsonObject tokenizerJson) {
        JsonObject model = tokenizerJson.getAsJsonObject("model");
        JsonElement vocab = model == null ? null : model.get("vocab");
        int size = 0;
        if (vocab != null && vocab.isJsonObject()) {
            for (Map.Entry<String, JsonElement> e : vocab.getAsJsonObject().entrySet()) {
                size = Math.max(size, e.getValue().getAsInt() + 1);
            }
        } else if (vocab != null && vocab.isJsonArray()) {
            size = vocab.getAsJsonArray().size();
        } else {
            throw new IllegalArgumentException("model.vocab is missing or neither an object nor a list");
        }
        if (tokenizerJson.has("added_tokens") && tokenizerJson.get("added_tokens").isJsonArray()) {
            for (JsonElement e : tokenizerJson.getAsJsonArray("added_tokens")) {
                size = Math.max(size, e.getAsJsonObject().get("id").getAsInt() + 1);
            }
        }
        String[] tokens = new String[size];
        if (vocab.isJsonObject()) {
            for (Map.Entry<String, JsonElement> e : vocab.getAsJsonObject().entrySet()) {
                tokens[e.getValue().getAsInt()] = e.getKey();
            }
        } else {
            int i = 0;
            for (JsonElement e : vocab.getAsJsonArray()) {
                tokens[i++] = e.getAsJsonArray().get(0).getAsString();
            }
        }
        if (tokenizerJson.has("added_tokens") && tokenizerJson.get("added_tokens").isJsonArray()) {
            for (JsonElement e : tokenizerJson.getAsJsonArray("added_tokens")) {
                JsonObject a = e.getAsJsonObject();
                tokens[a.get("id").getAsInt()] = a.get("content").getAsString();
            }
        }
        return new Vocabulary(tokens);
    }

    /**
     * The token string of an id.
     *
     * @param id a token id
     * @return its string, or null when the id is not in the vocabulary
     */
    public String token(long id) {
        return id >= 0 && id < tokens.length ? tokens[(int) id] : null;
    }
}
