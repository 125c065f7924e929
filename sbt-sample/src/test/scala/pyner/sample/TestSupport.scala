package pyner.sample

import java.io.File
import java.net.ServerSocket
import java.nio.charset.StandardCharsets.UTF_8
import java.nio.file.{Files, Path, Paths}
import java.util.concurrent.TimeUnit

import scala.jdk.CollectionConverters._
import scala.sys.process._

import com.fasterxml.jackson.databind.{JsonNode, ObjectMapper}
import io.grpc.ManagedChannelBuilder
import io.grpc.health.v1.{HealthCheckRequest, HealthCheckResponse, HealthGrpc}
import org.scalatest.Assertions._

/** Paths and oracles shared by the specs. Everything comes from system properties that build.sbt
  * sets (`pyner.bin`, `pyner.testArtifacts`, `pyner.repo`, `pyner.wikigold`), so the specs also
  * run from an IDE given the same -D flags.
  */
object TestSupport {
  private def prop(name: String): String =
    sys.props.get(name).getOrElse(fail(s"system property $name is not set (run the tests through sbt-sample/sbtw)"))

  val mapper = new ObjectMapper()
  lazy val pynerBin: String = prop("pyner.bin")
  lazy val testArtifacts: Path = Paths.get(prop("pyner.testArtifacts"))
  lazy val wikigold: Path = Paths.get(prop("pyner.wikigold"))

  /** A tiny artifact packaged by tests/make_test_artifacts.py, e.g. `artifact("bert-fp32")`. */
  def artifact(name: String): Path = {
    val p = testArtifacts.resolve(name)
    assert(Files.isRegularFile(p.resolve("pyner.json")), s"$p: no test artifact (sbt runs tests/make_test_artifacts.py first)")
    p
  }

  def tempDir(prefix: String): Path = Files.createTempDirectory(prefix)

  def readJson(p: Path): JsonNode = mapper.readTree(p.toFile)

  /** Entities in the pipeline's JSON form (entity_group or entity, score, word, start, end). */
  def entsFromJson(arr: JsonNode): Seq[Ent] = arr.elements().asScala.toSeq.map { e =>
    val label = Option(e.get("entity_group")).getOrElse(e.get("entity")).asText()
    Ent(label, e.get("score").asDouble(), e.get("word").asText(), e.get("start").asInt(), e.get("end").asInt())
  }

  /** The artifact's golden fixtures: (case id, text, entities per strategy name). */
  final case class GoldenCase(id: String, text: String, entities: Map[String, Seq[Ent]])

  def golden(artifact: Path): Seq[GoldenCase] =
    readJson(artifact.resolve("golden.json")).get("cases").elements().asScala.toSeq.map { c =>
      val ents = c.get("entities").properties().asScala.map(f => f.getKey -> entsFromJson(f.getValue)).toMap
      GoldenCase(c.get("id").asText(), c.get("text").asText(), ents)
    }

  def scoreTolerance(artifact: Path): Double =
    Option(readJson(artifact.resolve("pyner.json")).path("golden").get("score_tolerance")).map(_.asDouble()).getOrElse(1e-5)

  /** Writes texts as JSON Lines {"id", "text"} (texts may hold newlines); returns the file. */
  def writeJsonl(file: Path, docs: Seq[(String, String)]): Path = {
    val lines = docs.map { case (id, text) => mapper.writeValueAsString(Map("id" -> id, "text" -> text).asJava) }
    Files.write(file, lines.asJava, UTF_8)
  }

  /** `pyner predict ARTIFACT -i input -o out.jsonl`: the Python runtime's entities by id. */
  def pynerPredict(artifact: Path, input: Path, aggregation: String = "simple"): Map[String, Seq[Ent]] = {
    val out = Files.createTempFile("pyner-predict", ".jsonl")
    Files.delete(out)
    val cmd = Seq(pynerBin, "predict", artifact.toString, "-i", input.toString, "-o", out.toString,
                  "--aggregation", aggregation, "--threads", "1", "--quiet")
    val err = new StringBuilder
    val rc = Process(cmd).!(ProcessLogger(_ => (), l => err.append(l).append('\n')))
    assert(rc == 0, s"${cmd.mkString(" ")} failed with exit $rc:\n$err")
    val result = Files.readAllLines(out, UTF_8).asScala.filter(_.nonEmpty).map { line =>
      val node = mapper.readTree(line)
      node.get("id").asText() -> entsFromJson(node.get("entities"))
    }.toMap
    Files.delete(out)
    result
  }

  /** WikiGold sentences rebuilt from the BIO tokens (tokens joined by single spaces), in file order. */
  def wikigoldSentences(limit: Int): Seq[String] = {
    assert(Files.isRegularFile(wikigold), s"$wikigold: WikiGold test.bio not found (set PYNER_WIKIGOLD)")
    val sentences = Seq.newBuilder[String]
    val current = Seq.newBuilder[String]
    var n = 0
    def flush(): Unit = { val toks = current.result(); if (toks.nonEmpty) { sentences += toks.mkString(" "); n += 1 }; current.clear() }
    val it = Files.readAllLines(wikigold, UTF_8).iterator()
    while (it.hasNext && n < limit) {
      val line = it.next()
      if (line.trim.isEmpty) flush() else current += line.split('\t')(0)
    }
    if (n < limit) flush()
    sentences.result().take(limit)
  }

  /** Entities in the pipeline's JSON form, as groups (an `Ent` keeps no token index), for [[dev.pyner.Comparison]]. */
  def pipelineJson(es: Seq[Ent]): com.google.gson.JsonArray = {
    val a = new com.google.gson.JsonArray()
    for (e <- es) {
      val o = new com.google.gson.JsonObject()
      o.addProperty("entity_group", e.label)
      o.addProperty("score", e.score)
      o.addProperty("word", e.word)
      o.addProperty("start", e.start)
      o.addProperty("end", e.end)
      a.add(o)
    }
    a
  }

  /** The library's one entity comparison (dev.pyner.Comparison): label, start, end, word identical; scores within `tol`. */
  def compareEntities(where: String, expected: Seq[Ent], actual: Seq[Ent], tol: Double): dev.pyner.Comparison = {
    val c = new dev.pyner.Comparison(tol)
    c.entities(where, pipelineJson(actual), pipelineJson(expected))
    c
  }

  /** Same entities (through [[compareEntities]]). Returns how many had bit-identical scores. */
  def assertSameEntities(where: String, expected: Seq[Ent], actual: Seq[Ent], tol: Double): Int = {
    val c = compareEntities(where, expected, actual, tol)
    assert(c.ok, s"$where: entities differ: ${c.differences.asScala.mkString("; ")}\n expected ${expected.mkString(", ")}\n actual   ${actual.mkString(", ")}")
    c.identicalScores
  }

  /** A Spark job's output read back (jsonl or parquet): id -> entities. */
  def readSparkOutput(spark: org.apache.spark.sql.SparkSession, dir: Path, format: String): Map[String, Seq[Ent]] = {
    val rows = spark.read.format(if (format == "parquet") "parquet" else "json").load(dir.toString).collect()
    val pairs = rows.toSeq.map { r =>
      val ents = r.getSeq[org.apache.spark.sql.Row](r.fieldIndex("entities")).map { e =>
        Ent(e.getAs[String]("label"), e.getAs[Double]("score"), e.getAs[String]("word"),
            e.getAs[Number]("start").intValue, e.getAs[Number]("end").intValue)
      }
      r.getAs[String]("id") -> ents
    }
    assert(pairs.map(_._1).distinct.size == pairs.size, "duplicate ids in the output")
    pairs.toMap
  }

  /** Spark's entities against the Python runtime's, id by id: (entities, texts with bit-identical scores). */
  def compareWithPython(python: Map[String, Seq[Ent]], spark: Map[String, Seq[Ent]], of: Path): (Int, Int) = {
    assert(spark.keySet == python.keySet, s"ids differ: only Spark ${spark.keySet -- python.keySet}, only Python ${python.keySet -- spark.keySet}")
    val tol = scoreTolerance(of)
    val identical = python.keys.toSeq.sorted.map(id => assertSameEntities(s"line $id", python(id), spark(id), tol)).sum
    (python.values.map(_.size).sum, identical)
  }

  def freePort(): Int = { val s = new ServerSocket(0); try s.getLocalPort finally s.close() }

  /** A `pyner serve` subprocess on a free loopback port; stopped (SIGTERM, then kill) by `close`. */
  final class Sidecar(val artifact: Path, val port: Int) extends AutoCloseable {
    val target = s"127.0.0.1:$port"
    val log: Path = Files.createTempFile("pyner-serve", ".log")
    private val process: java.lang.Process = {
      val pb = new java.lang.ProcessBuilder(pynerBin, "serve", artifact.toString, "--host", "127.0.0.1", "--port", port.toString,
                                  "--metrics-port", "-1", "--threads", "1", "--grace-period", "2")
      pb.environment().keySet().removeIf(k => k.startsWith("PYNER_")) // only the flags above configure it
      pb.redirectErrorStream(true).redirectOutput(log.toFile).start()
    }

    def alive: Boolean = process.isAlive
    def output: String = new String(Files.readAllBytes(log), UTF_8)

    /** Polls grpc.health.v1 until SERVING; fails with the server's log if it exits or takes too long. */
    def awaitServing(timeoutSeconds: Int = 120): this.type = {
      val channel = ManagedChannelBuilder.forTarget(target).usePlaintext().build()
      try {
        val health = HealthGrpc.newBlockingStub(channel)
        val until = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutSeconds.toLong)
        var serving = false
        while (!serving) {
          if (!process.isAlive) fail(s"pyner serve exited with ${process.exitValue()} before serving:\n$output")
          if (System.nanoTime() > until) fail(s"pyner serve not SERVING after ${timeoutSeconds}s:\n$output")
          serving = try health.withDeadlineAfter(2, TimeUnit.SECONDS).check(HealthCheckRequest.getDefaultInstance)
              .getStatus == HealthCheckResponse.ServingStatus.SERVING
            catch { case _: io.grpc.StatusRuntimeException => false }
          if (!serving) Thread.sleep(200)
        }
      } finally channel.shutdownNow()
      this
    }

    override def close(): Unit = {
      process.destroy() // SIGTERM: the server drains and exits
      if (!process.waitFor(15, TimeUnit.SECONDS)) { process.destroyForcibly(); process.waitFor(5, TimeUnit.SECONDS) }
      Files.deleteIfExists(log)
    }
  }

  def deleteRecursively(p: Path): Unit =
    if (Files.exists(p)) {
      val s = Files.walk(p)
      try s.sorted(java.util.Comparator.reverseOrder[Path]()).forEach(f => Files.delete(f)) finally s.close()
    }

  def file(p: Path): File = p.toFile
}
