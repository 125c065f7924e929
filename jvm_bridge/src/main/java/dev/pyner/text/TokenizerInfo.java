package dev.pyner.text;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.pyner.PynerException;
import dev.pyner.artifact.Manifest;
import java.nio.file.Path;

/**
 * What decoding needs from the tokenizer, read once from the manifest's {@code tokenizer} object
 * and {@code tokenizer.json}, as the Python runtime reads it ({@code pyner.runtime.Model}): the
 * continuing-subword prefix (manifest, else the tokenizer model's), the unknown token's id (the
 * manifest's {@code unk_token_id}; when absent, {@code unk_token} (manifest, else the tokenizer
 * model's) looked up like {@code Tokenizer.token_to_id}), the padding id (manifest, else 0), the
 * token decoder and the vocabulary.
 *
 * @param path the tokenizer.json file
 * @param decoder the tokenizer's decoder (convert_tokens_to_string)
 * @param vocabulary id to token string
 * @param unkTokenId the unknown token's id, or null when the tokenizer has none
 * @param padTokenId the padding token's id
 * @param continuingSubwordPrefix "##" for WordPiece; null or empty: the space heuristic decides subwords
 */
public record TokenizerInfo(Path path, TokenDecoder decoder, Vocabulary vocabulary, Long unkTokenId, long padTokenId,
                            String continuingSubwordPrefix) {

    /**
     * Reads the tokenizer facts of an artifact.
     *
     * @param manifest the artifact's manifest
     * @return the facts
     * @throws PynerException naming tokenizer.json when its decoder or vocabulary cannot be read
     */
    public static TokenizerInfo read(Manifest manifest) throws PynerException {
        Path path = manifest.folder().resolve(Manifest.TOKENIZER_FILE);
        JsonObject tok = Manifest.readJsonObject(path);
        JsonObject info = manifest.tokenizer();
        JsonObject model = tok.has("model") && tok.get("model").isJsonObject() ? tok.getAsJsonObject("model") : new JsonObject();
        try {
            TokenDecoder decoder = TokenDecoders.fromJson(tok.get("decoder"));
            Vocabulary vocabulary = Vocabulary.fromTokenizerJson(tok);
            String prefix = info.has("continuing_subword_prefix") ? string(info.get("continuing_subword_prefix"))
                    : string(model.get("continuing_subword_prefix"));
            Long unkId = number(info.get("unk_token_id"));
            if (unkId == null) {
                String unk = info.has("unk_token") ? string(info.get("unk_token")) : string(model.get("unk_token"));
                unkId = unk == null || unk.isEmpty() ? null : tokenId(tok, unk);
            }
            Long padId = number(info.get("pad_token_id"));
            return new TokenizerInfo(path, decoder, vocabulary, unkId, padId == null ? 0 : padId, prefix);
        } catch (RuntimeException e) {
            throw new PynerException(path, "decoder or vocabulary: " + e.getMessage(), e);
        }
    }

    private static String string(JsonElement e) {
        return e == null || e.isJsonNull() ? null : e.getAsString();
    }

    private static Long number(JsonElement e) {
        return e == null || e.isJsonNull() ? null : e.getAsLong();
    }

    /** {@code Tokenizer.token_to_id}: added tokens first, then the model vocabulary (WordPiece/BPE map, Unigram list). */
    static Long tokenId(JsonObject tok, String token) {
        if (tok.has("added_tokens") && tok.get("added_tokens").isJsonArray()) {
            for (JsonElement e : tok.getAsJsonArray("added_tokens")) {
                JsonObject a = e.getAsJsonObject();
                if (token.equals(a.get("content").getAsString())) {
                    return a.get("id").getAsLong();
                }
            }
        }
        JsonObject model = tok.has("model") && tok.get("model").isJsonObject() ? tok.getAsJsonObject("model") : null;
        JsonElement vocab = model == null ? null : model.get("vocab");
        if (vocab != null && vocab.isJsonObject() && vocab.getAsJsonObject().has(token)) {
            return vocab.getAsJsonObject().get(token).getAsLong();
        }
        if (vocab != null && vocab.isJsonArray()) { // Unigram: [[piece, score], ...]
            int i = 0;
            for (JsonElement e : vocab.getAsJsonArray()) {
                if (token.equals(e.getAsJsonArray().get(0).getAsString())) {
                    return (long) i;
                }
                i++;
            }
        }
        return null;
    }
}
