package pyner.sample

import java.nio.charset.StandardCharsets.UTF_8
import java.nio.file.{Files, Path, Paths}
import java.util.concurrent.TimeUnit

import scala.jdk.CollectionConverters._

import org.apache.spark.sql.SparkSession
import org.scalatest.BeforeAndAfterAll
import org.scalatest.funsuite.AnyFunSuite

import KafkaBroker.Rec
import TestSupport._

/** StreamingNer against a real Kafka broker (KRaft, its own JVM, loopback; see [[KafkaBroker]]). The
  * oracle is `pyner predict` on the same texts. The guarantee under test is the one documented:
  * at-least-once, keyed by article id; after a kill and a restart from the checkpoint no input is
  * missing, and a record that came out twice carries the same entities both times.
  */
class StreamingNerSpec extends AnyFunSuite with BeforeAndAfterAll {
  import StreamingNerSpec._

  private var broker: KafkaBroker = _
  private var spark: SparkSession = _
  private val work = tempDir("streaming-ner")
  // A private copy of the test artifact: ExecutorModel keeps one model per folder and JVM, and the
  // first test counts this spec's own load.
  private lazy val art: Path = {
    val src = artifact("bert-fp32")
    val dir = Files.createDirectories(work.resolve("artifact").resolve(src.getFileName.toString))
    Files.list(src).iterator().asScala.foreach(f => Files.copy(f, dir.resolve(f.getFileName.toString)))
    dir
  }
  // 2,000 articles: the 1,696 WikiGold test sentences, then the first 304 again under new ids.
  private val articles = 2000
  private lazy val corpus: Seq[(String, String)] = {
    val sentences = wikigoldSentences(articles)
    (0 until articles).map(i => f"wg-${i + 1}%04d" -> sentences(i % sentences.size))
  }
  private lazy val python: Map[String, Seq[Ent]] = pynerPredict(art, writeJsonl(work.resolve("corpus.jsonl"), corpus))

  // the work folder goes even if this JVM dies before afterAll (the broker and the drivers have hooks of their own)
  private val cleanup = new Thread(() => try deleteRecursively(work) catch { case _: Exception => () })

  override def beforeAll(): Unit = {
    Runtime.getRuntime.addShutdownHook(cleanup)
    broker = KafkaBroker.start()
    spark = SparkSession.builder().master("local[2]").appName("pyner-streaming-test")
      .config("spark.ui.enabled", "false")
      // the sink's Kafka producers are cached per JVM (default: 10 minutes idle); closed soon after the
      // last query here, they do not try the stopped broker during the specs that follow
      .config("spark.kafka.producer.cache.timeout", "2s")
      .config("spark.kafka.producer.cache.evictorThreadRunInterval", "1s")
      .config("spark.sql.shuffle.partitions", "2")
      .config("spark.driver.host", "127.0.0.1")
      .config("spark.driver.bindAddress", "127.0.0.1")
      .getOrCreate()
  }

  override def afterAll(): Unit = {
    try {
      if (spark != null) { spark.streams.active.foreach(_.stop()); spark.stop() }
      ExecutorModel.closeAll()
      Thread.sleep(3000) // the cached producers' eviction (above), while the broker still answers
    } finally {
      if (broker != null) broker.close()
      try deleteRecursively(work) catch { case _: java.io.IOException => () }
      try Runtime.getRuntime.removeShutdownHook(cleanup) catch { case _: IllegalStateException => () }
    }
  }

  /** Three new topics with two partitions each: input, output, dead letters. */
  private def topics(name: String): (String, String, String) = {
    val t = (s"$name-articles", s"$name-entities", s"$name-dead-letters")
    broker.createTopics(2, t._1, t._2, t._3)
    t
  }

  private def produce(topic: String, docs: Seq[(String, String)]): Unit = {
    val p = broker.producer()
    try KafkaBroker.send(p, topic, docs.map { case (id, text) => id -> json(Map("id" -> id, "text" -> text)).getBytes(UTF_8) })
    finally p.close()
  }

  private def args(in: String, out: String, dlq: String, checkpoint: Path, extra: String*): Array[String] =
    (Seq("--bootstrap-servers", broker.bootstrap, "--input-topic", in, "--output-topic", out, "--dead-letter-topic", dlq,
         "--checkpoint", checkpoint.toString, "--artifact", art.toString) ++ extra).toArray

  /** The output records by id, checked: each key is its value's id, the value has exactly SparkNer's row
    * fields; an id that came out more than once carries the same entities every time. Returns id ->
    * entities, and how many records were duplicates (with how many of those had bit-identical scores).
    */
  private def byId(recs: Seq[Rec]): (Map[String, Seq[Ent]], Int, Int) = {
    val parsed = recs.map { r =>
      val (id, ents) = outputRow(r.value)
      assert(r.key == id, s"record key ${r.key} is not the article id $id")
      id -> ents
    }
    val grouped = parsed.groupBy(_._1)
    val tol = scoreTolerance(art)
    var identical = 0
    for ((id, copies) <- grouped; other <- copies.tail) {
      assertSameEntities(s"$id (a duplicate)", copies.head._2, other._2, tol)
      if (copies.head._2 == other._2) identical += 1
    }
    (grouped.map { case (id, copies) => id -> copies.head._2 }, parsed.size - grouped.size, identical)
  }

  test(s"$articles WikiGold sentences through Kafka: every one out once, keyed by id, entities equal `pyner predict`; one model load") {
    val (in, out, dlq) = topics("a")
    val loadsBefore = ExecutorModel.loads
    produce(in, corpus.take(articles / 2)) // half before the query starts, half while it runs
    val running = StreamingNer.start(spark, StreamingNer.parseArgs(args(in, out, dlq, work.resolve("ckpt-a"),
      "--trigger-interval", "200ms", "--max-offsets-per-trigger", "500", "--batch-size", "64")))
    val (recs, batches) = try {
      produce(in, corpus.drop(articles / 2))
      val reader = broker.reader(out)
      try {
        val recs = reader.until(180, s"all $articles articles")(rs => rs.map(_.key).distinct.size >= articles)
        (recs, running.query.recentProgress.count(_.numInputRows > 0))
      } finally reader.close()
    } finally running.query.stop()
    assert(running.query.exception.isEmpty, running.query.exception.toString)

    val (got, duplicates, _) = byId(recs)
    assert(duplicates == 0, "a query that ran without interruption wrote a record twice")
    val (entities, identical) = compareWithPython(python, got, art)
    assert(entities > 0)
    val dead = broker.reader(dlq)
    try assert(dead.size == 0, "well-formed articles went to the dead-letter topic") finally dead.close()
    // one model in this JVM (the executor of local[2]) for every batch and both task threads
    assert(ExecutorModel.loads == loadsBefore + 1)
    assert(running.loads.value.asScala.map(_.loadInJvm) == Seq(1), running.loads.value.toString)
    info(s"parity (Kafka -> StreamingNer -> Kafka): $articles/$articles articles in $batches micro-batches, " +
      s"$entities entities equal, $identical with bit-identical scores; 1 model load")
  }

  test("killed mid-stream (SIGKILL of the driver JVM), restarted from its checkpoint: no input missing; a duplicate carries the same entities") {
    val (in, out, dlq) = topics("b")
    produce(in, corpus)
    val perTrigger = 100
    val cli = args(in, out, dlq, work.resolve("ckpt-b"), "--master", "local[2]", "--trigger-interval", "0",
                   "--max-offsets-per-trigger", perTrigger.toString, "--batch-size", "50").toSeq
    val reader = broker.reader(out)
    try {
      val first = new Driver(cli, work.resolve("driver-1.log"))
      val beforeKill = try {
        reader.until(240, "300 articles")(rs => { assert(first.alive, s"StreamingNer exited:\n${first.output}"); rs.size >= 300 })
        first.kill() // SIGKILL: no shutdown hook, no flush, the batch in flight is left uncommitted
        val drain = System.nanoTime() + TimeUnit.SECONDS.toNanos(3)
        while (System.nanoTime() < drain) reader.poll() // whatever it wrote before dying
        reader.all.size
      } finally first.kill()
      assert(beforeKill < articles, s"the first run wrote everything ($beforeKill records) before it was killed")

      val restarted = System.currentTimeMillis()
      val second = new Driver(cli, work.resolve("driver-2.log"))
      val recs = try reader.until(240, s"all $articles articles after the restart") { rs =>
        assert(second.alive, s"StreamingNer exited after the restart:\n${second.output}")
        rs.map(_.key).distinct.size >= articles
      } finally second.stop()
      val firstAfter = recs.drop(beforeKill).headOption.map(_.seenMillis - restarted)

      val (got, duplicates, identical) = byId(recs)
      assert(got.keySet == corpus.map(_._1).toSet, "an input article is missing from the output")
      // resumed from the checkpoint, not from the start: only the uncommitted batch can be written twice
      assert(duplicates <= perTrigger, s"$duplicates duplicates: more than the one batch in flight at the kill ($perTrigger records)")
      val (entities, _) = compareWithPython(python, got, art)
      assert(entities > 0)
      // each driver JVM: one model load, and its per-batch progress lines
      for (d <- Seq(first, second)) {
        val lines = d.output.linesIterator.toSeq
        assert(lines.count(_.startsWith("ExecutorModel: loaded ")) == 1, d.output)
        assert(lines.exists(_.matches("StreamingNer: batch \\d+: \\d+ records in .*")), d.output)
      }
      info(s"at-least-once: $beforeKill records out before the kill, ${recs.size - beforeKill} after the restart, " +
        s"$articles/$articles articles present, $duplicates duplicate(s) ($identical with bit-identical scores); " +
        s"first record ${firstAfter.map(ms => f"${ms / 1000.0}%.1f s").getOrElse("-")} after the restart (JVM, Spark and model start included)")
    } finally reader.close()
  }

  test("malformed records go to the dead-letter topic with their error and the record itself; the stream goes on") {
    val (in, out, dlq) = topics("c")
    val good = corpus.take(9)
    val malformed: Seq[(String, Array[Byte], String)] = Seq(
      ("k1", "this is not JSON".getBytes(UTF_8), "invalid JSON ("),
      ("k2", """{"id": "x2"}""".getBytes(UTF_8), "\"text\" must be a string, got nothing"),
      ("k3", """[1, 2]""".getBytes(UTF_8), "expected a JSON object with a \"text\" field, got array"),
      ("k4", """{"id": "x4", "text": 5}""".getBytes(UTF_8), "\"text\" must be a string, got number"),
      ("k5", null, "the record has no value (null)"),
      ("k6", Array(0x7b, 0xff, 0xfe, 0x7d).map(_.toByte), "the value is not UTF-8 text (kept as value_base64)"),
    )
    def goodRecords(docs: Seq[(String, String)]) = docs.map { case (id, t) => id -> json(Map("id" -> id, "text" -> t)).getBytes(UTF_8) }
    val p = broker.producer()
    val running = StreamingNer.start(spark, StreamingNer.parseArgs(args(in, out, dlq, work.resolve("ckpt-c"), "--trigger-interval", "200ms")))
    val (outRecs, deadRecs) = try {
      // good, bad, good interleaved; then, once the dead letters are out, more good records: the stream goes on
      val sent = KafkaBroker.send(p, in, goodRecords(good.take(3)) ++ malformed.map(m => m._1 -> m._2) ++ goodRecords(good.slice(3, 6)))
      val dead = broker.reader(dlq)
      val deadRecs = try dead.until(120, "6 dead letters")(_.size >= malformed.size) finally dead.close()
      assert(running.query.isActive, running.query.exception.toString)
      KafkaBroker.send(p, in, goodRecords(good.drop(6)))
      val reader = broker.reader(out)
      val outRecs = try reader.until(120, "9 articles")(_.map(_.key).distinct.size >= good.size) finally reader.close()
      // each dead letter: keyed by where it was read, with the error, the coordinates and the record
      val coordinates = sent.slice(3, 3 + malformed.size)
      assert(deadRecs.size == malformed.size)
      val byKey = deadRecs.map(r => r.key -> mapper.readTree(r.value)).toMap
      for (((key, value, error), md) <- malformed.zip(coordinates)) {
        val where = s"$in/${md.partition}/${md.offset}"
        val v = byKey.getOrElse(where, fail(s"no dead letter keyed $where (keys: ${byKey.keySet})"))
        assert(v.get("error").asText().startsWith(error), v.toString)
        assert(v.get("topic").asText() == in && v.get("partition").asInt() == md.partition && v.get("offset").asLong() == md.offset, v.toString)
        assert(v.get("timestamp").asLong() == md.timestamp(), v.toString)
        assert(v.get("key").asText() == key, v.toString)
        if (value == null) assert(v.get("value").isNull, v.toString)
        else if (key == "k6") assert(java.util.Arrays.equals(java.util.Base64.getDecoder.decode(v.get("value_base64").asText()), value), v.toString)
        else assert(v.get("value").asText() == new String(value, UTF_8), v.toString)
      }
      (outRecs, deadRecs)
    } finally { p.close(); running.query.stop() }
    assert(running.query.exception.isEmpty, running.query.exception.toString)
    assert(running.deadLetters.value == malformed.size)
    val (got, _, _) = byId(outRecs)
    val (entities, _) = compareWithPython(python.filter { case (id, _) => good.exists(_._1 == id) }, got, art)
    info(s"dead letters: ${deadRecs.size} (${malformed.map(_._3.takeWhile(_ != '(').trim).mkString("; ")}); " +
      s"${got.size} good articles around them out, $entities entities equal `pyner predict`")
  }

  test("options and errors: missing or equal topics, bad values, a topic that does not exist (exit 3), no broker (exit 1)") {
    def usage(a: String*) = intercept[SampleError](StreamingNer.parseArgs(a.toArray))
    val base = Seq("--bootstrap-servers", "127.0.0.1:1", "--input-topic", "i", "--output-topic", "o",
                   "--dead-letter-topic", "d", "--checkpoint", "/tmp/c", "--artifact", "a")
    assert(usage(base.dropRight(2): _*).getMessage.startsWith("--artifact is required\nusage: StreamingNer "))
    assert(usage(base.drop(2): _*).getMessage.startsWith("--bootstrap-servers is required"))
    val same = usage(base.updated(5, "i"): _*)
    assert(same.exitCode == 2 && same.getMessage.startsWith("--input-topic, --output-topic and --dead-letter-topic must be three different topics"), same.getMessage)
    assert(usage(base ++ Seq("--trigger-interval", "soon"): _*).getMessage ==
      "--trigger-interval needs a duration such as 0, 500ms, 2s or 1min, got 'soon'")
    assert(StreamingNer.parseArgs((base ++ Seq("--trigger-interval", "2s")).toArray).triggerMillis == 2000L)
    assert(usage(base ++ Seq("--max-offsets-per-trigger", "0"): _*).getMessage == "--max-offsets-per-trigger needs a positive integer, got '0'")
    assert(usage(base ++ Seq("--kafka", "acks"): _*).getMessage.startsWith("--kafka needs KEY=VALUE"))
    assert(usage(base ++ Seq("--kafka", "key.serializer=x"): _*).getMessage.startsWith("--kafka key.serializer: set by StreamingNer itself"))
    assert(usage(base ++ Seq("--starting-offsets", "now"): _*).getMessage == "--starting-offsets must be earliest or latest, got 'now'")
    assert(usage(base ++ Seq("--aggregation", "loudest"): _*).getMessage.startsWith("--aggregation: unknown aggregation strategy 'loudest'"))

    val ckpt = work.resolve("ckpt-d").toString
    val live = Seq("--bootstrap-servers", broker.bootstrap, "--input-topic", "nope-in", "--output-topic", "nope-out",
                   "--dead-letter-topic", "nope-dlq", "--checkpoint", ckpt, "--artifact", art.toString)
    val missing = intercept[SampleError](StreamingNer.start(spark, StreamingNer.parseArgs(live.toArray)))
    assert(missing.exitCode == 3 && missing.getMessage.startsWith(s"topic(s) nope-in, nope-out, nope-dlq not found at ${broker.bootstrap}"), missing.getMessage)
    val noArtifact = intercept[SampleError](StreamingNer.start(spark, StreamingNer.parseArgs(live.updated(11, "/nonexistent/demo").toArray)))
    assert(noArtifact.exitCode == 4 && noArtifact.getMessage.startsWith("artifact folder not found: /nonexistent/demo"))
    val port = freePort()
    val down = intercept[SampleError](StreamingNer.start(spark, StreamingNer.parseArgs((live.updated(1, s"127.0.0.1:$port") ++
      Seq("--kafka", "default.api.timeout.ms=2000", "--kafka", "request.timeout.ms=1000")).toArray)))
    assert(down.exitCode == 1 && down.getMessage.startsWith(s"Kafka at 127.0.0.1:$port"), down.getMessage)
    assert(spark.streams.active.isEmpty)
  }
}

object StreamingNerSpec {
  val mapper = new com.fasterxml.jackson.databind.ObjectMapper()

  def json(fields: Map[String, String]): String = mapper.writeValueAsString(fields.asJava)

  /** An output record's value: exactly SparkNer's row, {"id", "entities": [{label, score, word, start, end}]}. */
  def outputRow(value: String): (String, Seq[Ent]) = {
    val node = mapper.readTree(value)
    assert(node.fieldNames().asScala.toSeq == Seq("id", "entities"), value)
    val ents = node.get("entities").elements().asScala.toSeq.map { e =>
      assert(e.fieldNames().asScala.toSet == Set("label", "score", "word", "start", "end"), value)
      Ent(e.get("label").asText(), e.get("score").asDouble(), e.get("word").asText(), e.get("start").asInt(), e.get("end").asInt())
    }
    node.get("id").asText() -> ents
  }

  /** `StreamingNer` as a user runs it: a plain `java -cp <every jar>` process, output appended to `log`;
    * its temporary files (Spark's, which a SIGKILL leaves behind) in a folder beside `log`.
    */
  final class Driver(args: Seq[String], log: Path) {
    private val process: java.lang.Process = {
      val javaBin = Paths.get(sys.props("java.home"), "bin", "java").toString
      val tmp = Files.createDirectories(log.resolveSibling(s"${log.getFileName}.tmp"))
      val cmd = Seq(javaBin, "-Xmx768m", s"-Djava.io.tmpdir=$tmp", s"-Dlog4j2.configurationFile=${sys.props("pyner.log4j")}") ++
        sys.props("pyner.sparkJavaOptions").split(' ').toSeq ++
        Seq("-cp", sys.props("pyner.runtimeClasspath"), "pyner.sample.StreamingNer") ++ args
      val pb = new java.lang.ProcessBuilder(cmd.asJava).redirectErrorStream(true)
        .redirectOutput(java.lang.ProcessBuilder.Redirect.appendTo(log.toFile))
      pb.environment().putAll(Map("DJL_OFFLINE" -> "true", "OPT_OUT_TRACKING" -> "true", "SPARK_LOCAL_IP" -> "127.0.0.1").asJava)
      pb.start()
    }
    private val hook = new Thread(() => kill())
    Runtime.getRuntime.addShutdownHook(hook)

    def alive: Boolean = process.isAlive
    def pid: Long = process.pid()
    def output: String = if (Files.exists(log)) new String(Files.readAllBytes(log), UTF_8) else ""

    /** SIGKILL, as a crash or an OOM kill would. */
    def kill(): Unit = if (process.isAlive) { process.destroyForcibly(); process.waitFor(30, TimeUnit.SECONDS) }

    /** SIGTERM (the query stops, Spark shuts down), then SIGKILL after 60 s. */
    def stop(): Unit = {
      if (process.isAlive) { process.destroy(); if (!process.waitFor(60, TimeUnit.SECONDS)) kill() }
      try Runtime.getRuntime.removeShutdownHook(hook) catch { case _: IllegalStateException => () }
    }
  }
}
