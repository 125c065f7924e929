package dev.pyner;

import static org.junit.jupiter.api.Assertions.fail;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;

/**
 * The artifacts packaged by tests/make_test_artifacts.py in the build (generate-test-resources),
 * found through the system property {@code pyner.testArtifacts} that surefire sets.
 */
public final class TestArtifacts {

    private TestArtifacts() {}

    /** @return the folder holding the test artifacts */
    public static Path root() {
        String dir = System.getProperty("pyner.testArtifacts");
        if (dir == null) {
            fail("system property pyner.testArtifacts is not set (run the tests through Maven: cd jvm_bridge && mvn test)");
        }
        Path p = Paths.get(dir);
        if (!Files.isRegularFile(p.resolve("index.json"))) {
            fail("no test artifacts in " + p + ": the build runs tests/make_test_artifacts.py in generate-test-resources"
                    + " (needs ../.venv: run scripts/bootstrap, or -Dpyner.python=/path/to/python)");
        }
        return p;
    }

    /** @return every packaged token-classification artifact folder (family-precision) */
    public static List<Path> all() {
        return list("artifacts").stream().filter(p -> task(p).equals("token-classification")).toList();
    }

    /** The text-classification test artifacts (tests/make_test_artifacts.py; docs/tasks.md). */
    public static final List<String> CLASSIFICATION = List.of("bert-cls-fp32", "roberta-cls-fp32", "bert-mlabel-fp32",
            "bert-cls-int8");
    /** The feature-extraction test artifacts: tiny random encoders and the real all-MiniLM-L6-v2. */
    public static final List<String> EMBEDDING = List.of("bert-emb-fp32", "xlm-roberta-emb-fp32", "minilm-emb-fp32");

    /**
     * The text-classification artifacts. Fails (never skips) when one is missing.
     *
     * @return their folders
     */
    public static List<Path> classification() {
        return CLASSIFICATION.stream().map(TestArtifacts::get).toList();
    }

    /**
     * The feature-extraction artifacts. Fails (never skips) when one is missing.
     *
     * @return their folders
     */
    public static List<Path> embedding() {
        return EMBEDDING.stream().map(TestArtifacts::get).toList();
    }

    /**
     * An artifact's task, as its manifest says (absent: token-classification).
     *
     * @param artifact the folder
     * @return the task's wire name
     */
    public static String task(Path artifact) {
        try {
            JsonObject m = JsonParser.parseString(Files.readString(artifact.resolve("pyner.json"), StandardCharsets.UTF_8))
                    .getAsJsonObject();
            return m.has("task") ? m.get("task").getAsString() : "token-classification";
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    /** @return the fp32 artifacts with max_length 64 (most golden texts in one window) */
    public static List<Path> long64() {
        return list("long_artifacts").stream().filter(p -> task(p).equals("token-classification")).toList();
    }

    /**
     * The artifacts with ONNX external data ({@code <family>-fp32-ext}, {@code <family>-int8-ext}).
     * Fails (never skips) when index.json does not list them.
     *
     * @return their folders
     */
    public static List<Path> external() {
        return list("external_artifacts");
    }

    private static List<Path> list(String key) {
        Path root = root();
        try {
            JsonObject index = JsonParser.parseString(Files.readString(root.resolve("index.json"), StandardCharsets.UTF_8))
                    .getAsJsonObject();
            List<Path> out = new ArrayList<>();
            if (!index.has(key)) {
                fail(root + "/index.json has no '" + key + "': re-run tests/make_test_artifacts.py");
            }
            for (JsonElement e : index.getAsJsonArray(key)) {
                out.add(root.resolve(e.getAsString()));
            }
            return out;
        } catch (IOException e) {
            throw new AssertionError(e);
        }
    }

    /**
     * One artifact.
     *
     * @param name e.g. "bert-fp32"
     * @return its folder
     */
    public static Path get(String name) {
        Path p = root().resolve(name);
        if (!Files.isDirectory(p)) {
            fail("test artifact " + name + " missing in " + root());
        }
        return p;
    }
}
