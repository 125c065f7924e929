package pyner.sample

import java.nio.charset.StandardCharsets.UTF_8
import java.nio.file.{Files, Path}

import scala.jdk.CollectionConverters._

import org.apache.spark.sql.SparkSession
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

import TestSupport._

/** The Spark job on local[2] against `pyner predict` on the same input. */
class SparkNerSpec extends AnyFunSuite with BeforeAndAfterAll {

  private var spark: SparkSession = _
  private lazy val art = artifact("bert-fp32")

  override def beforeAll(): Unit = {
    spark = SparkSession.builder().master("local[2]").appName("pyner-spark-test")
      .config("spark.ui.enabled", "false")
      .config("spark.sql.shuffle.partitions", "2")
      .config("spark.driver.host", "127.0.0.1")
      .config("spark.driver.bindAddress", "127.0.0.1")
      .getOrCreate()
  }

  override def afterAll(): Unit = {
    if (spark != null) spark.stop()
    ExecutorModel.closeAll()
  }

  private def readOutput(dir: Path, format: String): Map[String, Seq[Ent]] = readSparkOutput(spark, dir, format)

  private def compare(python: Map[String, Seq[Ent]], spark: Map[String, Seq[Ent]], of: Path = art): (Int, Int) =
    compareWithPython(python, spark, of)

  test("WikiGold slice (plain-text lines): output equals `pyner predict` on the same file; one model load") {
    val dir = tempDir("spark-wikigold")
    val sentences = wikigoldSentences(300)
    val input = Files.write(dir.resolve("wikigold.txt"), sentences.asJava, UTF_8)
    val out = dir.resolve("out")
    val loadsBefore = ExecutorModel.loads
    val summary = SparkNer.run(spark, SparkNer.parseArgs(Array(
      "--artifact", art.toString, "--input", input.toString, "--output", out.toString,
      "--ship-artifact", "--partitions", "4", "--batch-size", "16", "--expect-digest", digestOf(art))))
    assert(summary.documents == sentences.size)
    assert(summary.badLineCount == 0)
    // four partitions on two task threads, one JVM: the shipped copy is loaded exactly once
    assert(ExecutorModel.loads == loadsBefore + 1)
    val (entities, identical) = compare(pynerPredict(art, input), readOutput(out, "jsonl"))
    assert(entities > 0)
    info(s"parity (Spark, WikiGold): ${sentences.size} sentences, $entities entities equal, $identical with bit-identical scores")
  }

  test("an external-data artifact (weights in model.onnx.data): output equals `pyner predict` on the same file") {
    val external = readJson(testArtifacts.resolve("index.json")).path("external_artifacts").elements().asScala.map(_.asText()).toSeq
    assert(external.nonEmpty, "index.json lists no external_artifacts (tests/make_test_artifacts.py makes them)")
    val ext = artifact(external.find(_.endsWith("-fp32-ext")).getOrElse(external.head))
    val manifest = readJson(ext.resolve("pyner.json"))
    assert(manifest.path("external_data").asText() == "model.onnx.data" && Files.size(ext.resolve("model.onnx.data")) > 0,
      s"$ext: not an external-data artifact")
    val dir = tempDir("spark-ext")
    val sentences = wikigoldSentences(120) // max_length 32, stride 8: many sentences take several windows
    val input = Files.write(dir.resolve("wikigold.txt"), sentences.asJava, UTF_8)
    val out = dir.resolve("out")
    val summary = SparkNer.run(spark, SparkNer.parseArgs(Array(
      "--artifact", ext.toString, "--input", input.toString, "--output", out.toString, "--partitions", "2", "--batch-size", "32")))
    assert(summary.documents == sentences.size)
    val (entities, identical) = compare(pynerPredict(ext, input), readOutput(out, "jsonl"), ext)
    assert(entities > 0)
    info(s"parity (Spark, ${ext.getFileName}): ${sentences.size} sentences, $entities entities equal, $identical with bit-identical scores")
  }

  /** A private copy of the test artifact: ExecutorModel caches one model per folder, and these tests need fresh loads. */
  private def copyOf(artifact: Path): Path = {
    val dir = tempDir("spark-copy").resolve(artifact.getFileName.toString)
    Files.createDirectories(dir)
    Files.list(artifact).iterator().asScala.foreach(f => Files.copy(f, dir.resolve(f.getFileName.toString)))
    dir
  }

  test("--device cuda:0: without a usable GPU, fail stops the job naming what is missing; fallback equals the CPU run") {
    val dir = tempDir("spark-device")
    val sentences = wikigoldSentences(40)
    val input = Files.write(dir.resolve("in.txt"), sentences.asJava, UTF_8)
    val failing = copyOf(art)
    val e = intercept[Exception](SparkNer.run(spark, SparkNer.parseArgs(Array(
      "--artifact", failing.toString, "--input", input.toString, "--output", dir.resolve("o1").toString, "--device", "cuda:0"))))
    val chain = Iterator.iterate[Throwable](e)(_.getCause).takeWhile(_ != null).map(_.getMessage).mkString(" <- ")
    val gpuBuild = ai.onnxruntime.OrtEnvironment.getAvailableProviders.contains(ai.onnxruntime.OrtProvider.CUDA)
    assert(chain.contains("device cuda:0") && chain.contains(if (gpuBuild) "CUDA" else "onnxruntime_gpu"), chain)
    val falling = copyOf(art)
    val out = dir.resolve("o2")
    SparkNer.run(spark, SparkNer.parseArgs(Array("--artifact", falling.toString, "--input", input.toString,
      "--output", out.toString, "--device", "cuda:0", "--on-missing-gpu", "fallback")))
    assert(ExecutorModel.get(falling.toString, 1).device() == "cpu")
    assert(Option(ExecutorModel.get(falling.toString, 1).fallbackReason()).exists(_.contains("cuda:0")))
    val (entities, _) = compare(pynerPredict(art, input), readOutput(out, "jsonl"))
    assert(entities > 0)
    val bad = intercept[SampleError](SparkNer.parseArgs(Array("--artifact", "a", "--input", "b", "--output", "c", "--device", "tpu")))
    assert(bad.exitCode == 2 && bad.getMessage == "--device: device 'tpu': use cpu, cuda or cuda:N (N a device id, 0 first)", bad.getMessage)
    val policy = intercept[SampleError](SparkNer.parseArgs(Array("--artifact", "a", "--input", "b", "--output", "c", "--on-missing-gpu", "hope")))
    assert(policy.exitCode == 2 && policy.getMessage.startsWith("--on-missing-gpu: on_missing_gpu 'hope'"), policy.getMessage)
  }

  private val jsonl = Seq(
    """{"id": "a", "text": "Angela Merkel met Emmanuel Macron in Berlin."}""",
    """{"id": 7, "text": "Apple shares rose in Cupertino, California."}""",
    """{"id": "broken", "text": "no closing brace"""",
    "",
    """["an", "array"]""",
    """{"text": "The United Nations met in Geneva on Monday."}""",
    """{"id": "c", "text": 42}""",
    """{"id": "d", "text": "Lionel Messi scored twice for Inter Miami."} trailing""",
    """{"id": "e", "text": "Zoë Saldaña visited São Paulo 😀 and München."}""",
  )

  test("JSON Lines with bad lines, policy report: bad lines listed by number, the rest equals `pyner predict` (Parquet)") {
    val dir = tempDir("spark-jsonl")
    val input = Files.write(dir.resolve("docs.jsonl"), jsonl.asJava, UTF_8)
    val out = dir.resolve("out")
    val summary = SparkNer.run(spark, SparkNer.parseArgs(Array(
      "--artifact", art.toString, "--input", input.toString, "--output", out.toString, "--format", "parquet")))
    assert(summary.badLineCount == 4)
    assert(summary.firstBadLines.map(_.line) == Seq(3L, 5L, 7L, 8L))
    assert(summary.firstBadLines.head.error.startsWith(s"$input:3: invalid JSON ("), summary.firstBadLines.head.error)
    assert(summary.firstBadLines(1).error == s"""$input:5: expected a JSON object with a "text" field, got array""")
    assert(summary.firstBadLines(2).error == s"""$input:7: "text" must be a string, got number""")
    assert(SparkNer.report(summary).head.startsWith("4 bad input line(s) skipped (policy: report)"))
    val listed = spark.read.json(summary.badLinesOutput.get).collect().map(_.getAs[Long]("line")).sorted.toSeq
    assert(listed == Seq(3L, 5L, 7L, 8L))

    val good = Files.write(dir.resolve("good.jsonl"), Seq(jsonl(0), jsonl(1), jsonl(5), jsonl(8)).asJava, UTF_8)
    val python = pynerPredict(art, good).map { case (id, e) => (if (id == "3") "6" else id) -> e } // no id: the line number
    val got = readOutput(out, "parquet")
    assert(got.keySet == Set("a", "7", "6", "e"))
    compare(python, got)
  }

  test("JSON Lines with bad lines, policy fail: stops before writing anything, naming the lines") {
    val dir = tempDir("spark-fail")
    val input = Files.write(dir.resolve("docs.jsonl"), jsonl.asJava, UTF_8)
    val out = dir.resolve("out")
    val e = intercept[SampleError](SparkNer.run(spark, SparkNer.parseArgs(Array(
      "--artifact", art.toString, "--input", input.toString, "--output", out.toString, "--on-bad-line", "fail"))))
    assert(e.exitCode == 3)
    assert(e.getMessage.startsWith(s"$input: 4 bad line(s), nothing written (policy: fail); first: $input:3: invalid JSON"), e.getMessage)
    assert(!Files.exists(out))
  }

  test("closeAll (what the executor's shutdown hook runs) closes the JVM's models; a later task loads anew") {
    val model = ExecutorModel.get(art.toString, 1)
    assert(ExecutorModel.get(art.toString, 1) eq model, "a second task in the same JVM must get the same instance")
    assert(ExecutorModel.closeAll() >= 1)
    val e = intercept[IllegalStateException](model.predict(java.util.Collections.singletonList("Angela Merkel.")))
    assert(e.getMessage == "this PynerModel is closed")
    val loads = ExecutorModel.loads
    assert(!(ExecutorModel.get(art.toString, 1) eq model))
    assert(ExecutorModel.loads == loads + 1)
  }

  /** The artifact digest, computed here from pyner.json's bytes (what `pyner verify` prints). */
  private def digestOf(artifact: Path): String =
    "sha256:" + java.util.HexFormat.of().formatHex(
      java.security.MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(artifact.resolve("pyner.json"))))

  test("--expect-digest: another artifact is refused before any work (exit 4, both digests named); a bad pin is exit 2") {
    val dir = tempDir("spark-digest")
    val input = Files.write(dir.resolve("in.txt"), Seq("Angela Merkel.").asJava, UTF_8)
    val out = dir.resolve("out")
    val other = digestOf(artifact("roberta-fp32"))
    val e = intercept[dev.pyner.PynerException](SparkNer.run(spark, SparkNer.parseArgs(Array(
      "--artifact", art.toString, "--input", input.toString, "--output", out.toString, "--expect-digest", other))))
    assert(Cli.describe(e)._1 == 4)
    assert(e.getMessage.contains(s"artifact digest ${digestOf(art)} is not the expected $other"), e.getMessage)
    assert(!Files.exists(out))
    // The executors' loads are pinned too: a model of another artifact is refused there as well.
    val refused = intercept[dev.pyner.PynerException](ExecutorModel.get(artifact("roberta-fp32").toString, 1, Some(digestOf(art))))
    assert(refused.getMessage.contains(digestOf(art)), refused.getMessage)
    val bad = intercept[SampleError](SparkNer.parseArgs(Array("--artifact", "a", "--input", "b", "--output", "c", "--expect-digest", "abc")))
    assert(bad.exitCode == 2 && bad.getMessage.startsWith("--expect-digest: 'abc' is not an artifact digest"), bad.getMessage)
  }

  test("a missing artifact, a missing input and an existing output each fail with one line") {
    val dir = tempDir("spark-errors")
    val input = Files.write(dir.resolve("in.txt"), Seq("Angela Merkel.").asJava, UTF_8)
    def run(args: String*) = intercept[SampleError](SparkNer.run(spark, SparkNer.parseArgs(args.toArray)))
    val missingArtifact = run("--artifact", "/nonexistent/demo", "--input", input.toString, "--output", dir.resolve("o1").toString)
    assert((missingArtifact.exitCode, missingArtifact.getMessage) ==
      ((4, "artifact folder not found: /nonexistent/demo (make one with `pyner package`)")))
    val missingInput = run("--artifact", art.toString, "--input", dir.resolve("nope.txt").toString, "--output", dir.resolve("o2").toString)
    assert((missingInput.exitCode, missingInput.getMessage) == ((3, s"input file not found: ${dir.resolve("nope.txt")}")))
    val existing = run("--artifact", art.toString, "--input", input.toString, "--output", dir.toString)
    assert(existing.exitCode == 2 && existing.getMessage.startsWith(s"output $dir already exists"))
    val badFlag = intercept[SampleError](SparkNer.parseArgs(Array("--artifact", "a", "--input", "b", "--output", "c", "--aggregation", "loudest")))
    assert(badFlag.exitCode == 2)
    assert(badFlag.getMessage == "--aggregation: unknown aggregation strategy 'loudest'; valid: none, simple, first, average, max")
  }
}
