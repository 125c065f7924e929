package dev.pyner;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import dev.pyner.text.TokenDecoder;
import dev.pyner.text.TokenDecoders;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The Java decoders against the Rust {@code tokenizers} decoders: decoders.json holds token lists
 * and what {@code tokenizers} (through Python, at build time) decoded them to, for every decoder
 * type and hostile inputs (partial UTF-8 byte sequences, double decoding, flags, ZWJ emoji).
 */
class DecodersTest {

    @Test
    void everyCaseDecodesAsTheRustTokenizers() throws Exception {
        JsonObject root = JsonParser.parseString(Files.readString(TestArtifacts.root().resolve("decoders.json"),
                StandardCharsets.UTF_8)).getAsJsonObject();
        int n = 0;
        Set<String> types = new HashSet<>();
        List<String> failures = new ArrayList<>();
        for (JsonElement e : root.getAsJsonArray("cases")) {
            JsonObject c = e.getAsJsonObject();
            TokenDecoder d = TokenDecoders.fromJson(c.get("spec"));
            List<String> tokens = new ArrayList<>();
            c.getAsJsonArray("tokens").forEach(t -> tokens.add(t.getAsString()));
            String want = c.get("decoded").getAsString();
            String got = d.decode(tokens);
            if (!want.equals(got)) {
                failures.add(c.get("decoder").getAsString() + " " + tokens + ": got '" + got + "', want '" + want + "'");
            }
            types.add(c.get("decoder").getAsString());
            n++;
        }
        assertTrue(failures.isEmpty(), failures.size() + " of " + n + " cases differ:\n" + String.join("\n", failures));
        assertTrue(n > 500, "only " + n + " decoder cases");
        assertTrue(types.containsAll(Set.of("wordpiece", "bytelevel", "metaspace-always", "llama", "ctc", "bpe")), types.toString());
    }

    @Test
    void unknownDecoderTypeIsRefusedNamingTheSupportedOnes() {
        JsonObject spec = JsonParser.parseString("{\"type\": \"Nonsense\"}").getAsJsonObject();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TokenDecoders.fromJson(spec));
        assertTrue(e.getMessage().contains("Nonsense") && e.getMessage().contains("WordPiece"), e.getMessage());
    }

    @Test
    void noDecoderJoinsWithSpaces() {
        assertEquals("a ##b c", TokenDecoders.fromJson(null).decode(List.of("a", "##b", "c")));
    }
}
