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

    /** @return every packaged artifact folder (family-precision) */
    public static List<Path> all() {
        return list("artifacts");
    }

    /** @return the fp32 artifacts with max_length 64 (most golden texts in one window) */
    public static List<Path> long64() {
        return list("long_artifacts");
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
