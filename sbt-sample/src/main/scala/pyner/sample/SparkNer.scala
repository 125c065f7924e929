package pyner.sample

import java.nio.file.Paths
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicInteger

import scala.jdk.CollectionConverters._

import com.fasterxml.jackson.databind.{DeserializationFeature, JsonNode, ObjectMapper}
import com.fasterxml.jackson.core.JsonProcessingException
import org.apache.hadoop.fs.Path
import org.apache.spark.SparkFiles
import org.apache.spark.sql.{Encoders, SaveMode, SparkSession}
import org.apache.spark.storage.StorageLevel

import dev.pyner.{OnMissingGpu, PynerModel}
import dev.pyner.artifact.Manifest

/** Batch NER on Apache Spark: a text file in, (id, entities) out as JSON Lines or Parquet.
  *
  * Input: one file, plain-text lines (one document per line, id = line number) or JSON Lines
  * objects with "text" and an optional "id" (default: the line number), told apart by the first
  * non-blank line, exactly as `pyner predict -i FILE` does.
  *
  * Bad lines (JSON Lines input only: not JSON, not an object, "text" not a string) are found in a
  * first pass before any model runs. Policy `--on-bad-line report` (the default): the job goes on
  * without them, prints their line numbers and writes every one to OUTPUT.bad-lines/ (JSON Lines of
  * line, error). Policy `fail`: the job stops before writing anything, naming the first bad lines.
  *
  * The model: one instance per executor JVM, loaded lazily by the first task that needs it, shared
  * by that JVM's concurrent tasks, closed when the JVM shuts down (see [[ExecutorModel]]).
  *
  * {{{
  * sbt-sample/sbtw "runMain pyner.sample.SparkNer --artifact ../artifacts/demo --input docs.txt --output out"
  * }}}
  */
object SparkNer {

  final case class Options(artifact: String = "", input: String = "", output: String = "", format: String = "jsonl",
                           aggregation: String = "simple", onBadLine: String = "report", shipArtifact: Boolean = false,
                           master: Option[String] = None, batchSize: Int = 256, threads: Int = 1, partitions: Int = 0,
                           expectDigest: Option[String] = None, device: String = "cpu",
                           onMissingGpu: OnMissingGpu = OnMissingGpu.FAIL)

  final case class Doc(id: String, line: Long, text: String)
  final case class BadLine(line: Long, error: String)
  final case class Result(id: String, entities: Seq[Ent])
  final case class Summary(documents: Long, badLineCount: Long, firstBadLines: Seq[BadLine], output: String,
                           badLinesOutput: Option[String], seconds: Double, modelLoads: Seq[ModelLoad] = Nil)

  val Usage: String =
    """usage: SparkNer --artifact DIR --input FILE --output DIR [--format jsonl|parquet] [--aggregation simple]
      |                [--on-bad-line report|fail] [--ship-artifact] [--master local[2]] [--batch-size 256]
      |                [--threads 1] [--partitions N] [--expect-digest sha256:...] [--device cpu|cuda|cuda:N]
      |                [--on-missing-gpu fail|fallback]""".stripMargin

  def parseArgs(args: Array[String]): Options = {
    def loop(rest: List[String], o: Options): Options = rest match {
      case Nil                                => o
      case "--ship-artifact" :: tail          => loop(tail, o.copy(shipArtifact = true))
      case flag :: value :: tail if flag.startsWith("--") =>
        def int(): Int = scala.util.Try(value.toInt).toOption.filter(_ > 0).getOrElse(throw SampleError.usage(s"$flag needs a positive integer, got '$value'"))
        loop(tail, flag match {
          case "--artifact"    => o.copy(artifact = value)
          case "--input"       => o.copy(input = value)
          case "--output"      => o.copy(output = value)
          case "--format"      => o.copy(format = value)
          case "--aggregation" => o.copy(aggregation = value)
          case "--on-bad-line" => o.copy(onBadLine = value)
          case "--master"      => o.copy(master = Some(value))
          case "--batch-size"  => o.copy(batchSize = int())
          case "--threads"     => o.copy(threads = int())
          case "--partitions"  => o.copy(partitions = int())
          case "--device" =>
            try { dev.pyner.runtime.Gpu.parseDevice(value); o.copy(device = value) }
            catch { case e: IllegalArgumentException => throw SampleError.usage(s"--device: ${e.getMessage}") }
          case "--on-missing-gpu" =>
            try o.copy(onMissingGpu = OnMissingGpu.fromName(value))
            catch { case e: IllegalArgumentException => throw SampleError.usage(s"--on-missing-gpu: ${e.getMessage}") }
          case "--expect-digest" =>
            try o.copy(expectDigest = Some(Manifest.parseDigest(value)))
            catch { case e: IllegalArgumentException => throw SampleError.usage(s"--expect-digest: ${e.getMessage}") }
          case other           => throw SampleError.usage(s"unknown option $other\n$Usage")
        })
      case other :: _ => throw SampleError.usage(s"unexpected argument '$other'\n$Usage")
    }
    val o = loop(args.toList, Options())
    for ((name, v) <- Seq("--artifact" -> o.artifact, "--input" -> o.input, "--output" -> o.output) if v.isEmpty)
      throw SampleError.usage(s"$name is required\n$Usage")
    if (!Set("jsonl", "parquet")(o.format)) throw SampleError.usage(s"--format must be jsonl or parquet, got '${o.format}'")
    if (!Set("report", "fail")(o.onBadLine)) throw SampleError.usage(s"--on-bad-line must be report or fail, got '${o.onBadLine}'")
    try Cli.aggregation(o.aggregation) // rejects unknown names, listing the valid ones
    catch { case e: IllegalArgumentException => throw SampleError.usage(s"--aggregation: ${e.getMessage}") }
    o
  }

  def main(args: Array[String]): Unit = sys.exit(Cli.execute("SparkNer") {
    val o = parseArgs(args)
    val builder = SparkSession.builder().appName("pyner-spark-ner")
    // Under spark-submit the master comes from there; from sbt it defaults to local[2].
    if (!sys.props.contains("spark.master")) {
      val master = o.master.getOrElse("local[2]")
      checkLocalCluster(master, sys.env.get("SPARK_HOME").orElse(sys.props.get("spark.home")))
      builder.master(master)
      if (master.startsWith("local")) builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
      // every executor JVM registered (or 30 s passed) before the first task: else the first one up runs them all
      if (master.startsWith("local-cluster")) builder.config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
    }
    val spark = builder.config("spark.ui.enabled", "false").getOrCreate()
    try {
      val s = run(spark, o)
      println(f"SparkNer: ${s.documents} documents -> ${s.output} (${o.format}) in ${s.seconds}%.1f s " +
        f"(${s.documents / math.max(s.seconds, 1e-9)}%.1f docs/s)")
      println("SparkNer: " + loadsLine(s.modelLoads))
      report(s).foreach(line => System.err.println("SparkNer: " + line))
    } finally spark.stop()
  })

  /** One line on the model loads the executors reported: how many JVMs, and each one's loads. */
  def loadsLine(loads: Seq[ModelLoad]): String = {
    val byJvm = loads.groupBy(l => (l.executorId, l.pid)).toSeq.sortBy(_._1._1)
    s"${loads.size} model load(s) in ${byJvm.size} executor JVM(s): " +
      byJvm.map { case ((id, pid), ls) => s"executor $id (pid $pid) ${ls.size}" }.mkString(", ")
  }

  /** local-cluster[N,cores,MB] starts N workers whose executors are separate JVMs launched from
    * SPARK_HOME/jars: without that folder they die at start and the job waits for ever, so refuse first.
    */
  def checkLocalCluster(master: String, sparkHome: Option[String]): Unit =
    if (master.startsWith("local-cluster")) {
      val jars = sparkHome.map(h => Paths.get(h, "jars"))
      if (!jars.exists(j => java.nio.file.Files.isDirectory(j)))
        throw SampleError.usage(s"--master $master launches executor JVMs from SPARK_HOME/jars, " +
          (sparkHome match {
            case Some(h) => s"and $h/jars is not a folder"
            case None    => "and SPARK_HOME is not set"
          }) + " (sbt-sample/sbtw's run sets SPARK_HOME to target/scala-*/spark-home; or use a Spark distribution)")
    }

  /** The lines to print about bad input (none when there was none). */
  def report(s: Summary): Seq[String] =
    if (s.badLineCount == 0) Nil
    else (s"${s.badLineCount} bad input line(s) skipped (policy: report), all listed in ${s.badLinesOutput.getOrElse("-")}" +:
      s.firstBadLines.map(b => s"  ${b.error}"))

  /** Runs the job; throws SampleError for bad options, a missing artifact/input, an existing output. */
  def run(spark: SparkSession, o: Options): Summary = {
    import spark.implicits._
    val sc = spark.sparkContext
    val artifactDir = Cli.requireArtifact(Paths.get(o.artifact).toAbsolutePath.normalize())
    // A pinned artifact is refused on the driver before any work (exit 4, naming both digests), and
    // again by every executor's model load (a shipped or shared copy could differ).
    o.expectDigest.foreach(d => Manifest.read(artifactDir).checkDigest(d))
    val strategy = Cli.aggregation(o.aggregation)
    val hadoopConf = sc.hadoopConfiguration
    val inPath = new Path(o.input)
    val inFs = inPath.getFileSystem(hadoopConf)
    if (!inFs.exists(inPath)) throw SampleError.input(s"input file not found: ${o.input}")
    if (!inFs.getFileStatus(inPath).isFile) throw SampleError.input(s"${o.input}: not a file (give one text or JSON Lines file)")
    val badOut = o.output.stripSuffix("/") + ".bad-lines"
    for (p <- Seq(o.output, badOut)) {
      val path = new Path(p)
      if (path.getFileSystem(hadoopConf).exists(path))
        throw SampleError.usage(s"output $p already exists; remove it or choose another --output")
    }

    // Where executors find the artifact: a path they all see, or a copy shipped with the job (one
    // archive through addArchive: a folder through addFile is refused by every non-local master).
    val locate: ArtifactLocation =
      if (o.shipArtifact) ShipArtifact.ship(sc, artifactDir) else SharedPath(artifactDir.toString)
    // Every model load, reported by the executor JVM that made it (executor id, pid, folder).
    val loadsSeen = sc.collectionAccumulator[ModelLoad]("pyner model loads")

    val name = o.input
    val lines = (if (o.partitions > 0) sc.textFile(o.input, o.partitions) else sc.textFile(o.input)).zipWithIndex()
    val mode = InputLines.detect(lines.map(_._1).filter(l => !InputLines.isBlank(l)).take(1).headOption)
    val parsed = lines.mapPartitions { it =>
      val parser = new InputLines.Parser(name, mode)
      it.flatMap { case (body, index) => parser.parse(index + 1, body) }
    }.persist(StorageLevel.MEMORY_AND_DISK)
    try {
      val bad = parsed.flatMap(_.left.toOption)
      val badCount = bad.count()
      val firstBad = bad.take(20).toSeq
      if (badCount > 0 && o.onBadLine == "fail")
        throw SampleError.input(s"$name: $badCount bad line(s), nothing written (policy: fail); first: " +
          firstBad.take(5).map(_.error).mkString("; "))

      val started = System.nanoTime()
      val (batchSize, threads, digest, device, onMissingGpu) = (o.batchSize, o.threads, o.expectDigest, o.device, o.onMissingGpu)
      // START spark
      val results = parsed.flatMap(_.toOption).mapPartitions { docs =>
        val dir = locate.resolve()
        val model = ExecutorModel.get(dir, threads, digest, device, onMissingGpu) // once per executor JVM
        ExecutorModel.drainLoads(dir).foreach(loadsSeen.add) // reported once, by a task of the JVM that loaded it
        docs.grouped(batchSize).flatMap { batch =>
          val entities = model.predict(batch.map(_.text).asJava, strategy).asScala
          batch.zip(entities).map { case (doc, ents) => Result(doc.id, ents.asScala.toSeq.map(Ent.of)) }
        }
      }
      val writer = spark.createDataset(results)(Encoders.product[Result]).write.mode(SaveMode.ErrorIfExists)
      if (o.format == "parquet") writer.parquet(o.output) else writer.option("compression", "none").json(o.output)
      // END spark
      val seconds = (System.nanoTime() - started) / 1e9
      val documents = spark.read.format(if (o.format == "parquet") "parquet" else "json").load(o.output).count()
      val badOutput = if (badCount > 0) {
        bad.toDS().coalesce(1).write.mode(SaveMode.ErrorIfExists).option("compression", "none").json(badOut)
        Some(badOut)
      } else None
      Summary(documents, badCount, firstBad, o.output, badOutput, seconds, loadsSeen.value.asScala.toSeq.sortBy(_.executorId))
    } finally parsed.unpersist()
  }
}

/** Where an executor finds the artifact folder. */
sealed trait ArtifactLocation extends Serializable { def resolve(): String }
/** A path every node sees (a shared mount, or the local disk in local mode). */
final case class SharedPath(path: String) extends ArtifactLocation { def resolve(): String = path }
/** Shipped by the driver as one archive (see [[ShipArtifact]]); each executor finds it unpacked with
  * SparkFiles.get(archive name).
  */
final case class Shipped(name: String) extends ArtifactLocation {
  def resolve(): String = {
    val dir = Paths.get(SparkFiles.get(name)).toAbsolutePath.normalize
    if (!java.nio.file.Files.isRegularFile(dir.resolve("pyner.json")))
      throw new IllegalStateException(s"shipped artifact $name: no pyner.json in $dir on this executor " +
        "(it is added with SparkContext.addArchive by the driver; was the archive unpacked?)")
    dir.toString
  }
}

/** `--ship-artifact`: the artifact folder goes to the executors as ONE zip archive, added with
  * SparkContext.addArchive (what `spark-submit --archives` does). Spark serves it from the driver,
  * copies it to each executor once and unpacks it there into SparkFiles.get(name), on every master
  * (local, local-cluster, standalone, YARN, Kubernetes). A folder given to addFile(dir, recursive =
  * true) is accepted only by a local master; files added one by one would land flat in the
  * executors' SparkFiles folder, mixed with every other added file, and a model.onnx.data must sit
  * beside its model.onnx: one archive keeps the folder whole and is one transfer.
  *
  * Entries are STORED (not compressed): ONNX weights are float noise that deflate barely shrinks,
  * and packing or unpacking a 2 GB model should cost a copy, not minutes of CPU. The archive is
  * written once per driver JVM and artifact version into java.io.tmpdir (free space there: the
  * artifact's size), named FOLDER-DIGEST12.zip so that another version of the artifact is another
  * name, and removed when the driver exits.
  */
object ShipArtifact {
  private val packed = new ConcurrentHashMap[String, java.nio.file.Path]()

  /** The archive's name for an artifact folder: its folder name and the first 12 hex digits of its digest. */
  def archiveName(artifactDir: java.nio.file.Path): String = {
    val sha = java.security.MessageDigest.getInstance("SHA-256")
      .digest(java.nio.file.Files.readAllBytes(artifactDir.resolve("pyner.json")))
    s"${artifactDir.getFileName}-${java.util.HexFormat.of().formatHex(sha).take(12)}.zip"
  }

  /** Packs the folder (once per JVM and version), adds the archive to the context (once), returns where executors find it. */
  def ship(sc: org.apache.spark.SparkContext, artifactDir: java.nio.file.Path): Shipped = {
    val name = archiveName(artifactDir)
    val archive = packed.compute(name, (_, known) =>
      if (known != null && java.nio.file.Files.isRegularFile(known)) known
      else {
        val dir = java.nio.file.Files.createTempDirectory("pyner-ship")
        dir.toFile.deleteOnExit()
        val zip = dir.resolve(name)
        pack(artifactDir, zip)
        zip.toFile.deleteOnExit()
        zip
      })
    if (!sc.listArchives().exists(a => a.stripSuffix("/").endsWith("/" + name))) sc.addArchive(archive.toUri.toString)
    Shipped(name)
  }

  /** Writes every regular file under `dir` into `zip` as a STORED entry (its path relative to `dir`), in name order. */
  def pack(dir: java.nio.file.Path, zip: java.nio.file.Path): Unit = {
    import java.nio.file.Files
    val walk = Files.walk(dir)
    val files = try walk.iterator().asScala.filter(f => Files.isRegularFile(f)).toVector.sortBy(f => dir.relativize(f).toString)
                finally walk.close()
    val buffer = new Array[Byte](1 << 20)
    def eachChunk(f: java.nio.file.Path)(use: Int => Unit): Unit = {
      val in = Files.newInputStream(f)
      try { var n = in.read(buffer); while (n >= 0) { if (n > 0) use(n); n = in.read(buffer) } } finally in.close()
    }
    val out = new java.util.zip.ZipOutputStream(new java.io.BufferedOutputStream(Files.newOutputStream(zip), 1 << 20))
    try files.foreach { f =>
      val crc = new java.util.zip.CRC32()
      eachChunk(f)(n => crc.update(buffer, 0, n)) // STORED entries carry their CRC and size before the data
      val entry = new java.util.zip.ZipEntry(dir.relativize(f).toString.replace(java.io.File.separatorChar, '/'))
      entry.setMethod(java.util.zip.ZipEntry.STORED)
      entry.setSize(Files.size(f))
      entry.setCompressedSize(Files.size(f))
      entry.setCrc(crc.getValue)
      entry.setTime(0L)
      out.putNextEntry(entry)
      eachChunk(f)(n => out.write(buffer, 0, n))
      out.closeEntry()
    } finally out.close()
  }
}

/** One model load, as the executor JVM that made it reports it. */
final case class ModelLoad(executorId: String, pid: Long, artifactDir: String, sparkFilesRoot: String, loadInJvm: Int, seconds: Double)

/** One pyner model per executor JVM and artifact folder: loaded by the first task that asks, shared
  * by the JVM's concurrent tasks (PynerModel is thread-safe), closed by a shutdown hook when the
  * executor exits. `loads` counts loads in this JVM (tests check it stays 1 per folder).
  */
object ExecutorModel {
  // START executor-model
  private val models = new ConcurrentHashMap[String, PynerModel]()
  private val loadCount = new AtomicInteger()
  private lazy val hook: Unit = { sys.addShutdownHook(onShutdown()); () }

  def get(artifactDir: String, threads: Int, expectDigest: Option[String] = None, device: String = "cpu",
          onMissingGpu: OnMissingGpu = OnMissingGpu.FAIL): PynerModel = {
    hook // registered once, on first use
    models.computeIfAbsent(artifactDir, dir => {
      val started = System.nanoTime()
      val builder = PynerModel.builder().setArtifact(Paths.get(dir)).optThreads(threads)
        .optDevice(device).optOnMissingGpu(onMissingGpu) // cuda:N needs onnxruntime_gpu (docs/scala.md)
      expectDigest.foreach(d => builder.optExpectDigest(d)) // refuses any other artifact
      val model = builder.build()
      loaded(dir, loadCount.incrementAndGet(), (System.nanoTime() - started) / 1e9) // counted, logged, queued for the driver
      model
    })
  }
  // END executor-model

  def loads: Int = loadCount.get()

  // Loads not yet reported; the task that finds one here reports it (each load drained exactly once).
  private val unreported = new java.util.concurrent.ConcurrentLinkedQueue[ModelLoad]()

  private def loaded(dir: String, n: Int, seconds: Double): Unit = {
    val env = Option(org.apache.spark.SparkEnv.get)
    val load = ModelLoad(env.map(_.executorId).getOrElse("-"), ProcessHandle.current().pid(), dir,
      if (env.isDefined) Paths.get(SparkFiles.getRootDirectory()).toAbsolutePath.normalize.toString else "-", n, seconds)
    System.err.println(f"ExecutorModel: loaded $dir in $seconds%.1f s (executor ${load.executorId}, pid ${load.pid}, load #$n in this JVM)")
    unreported.add(load)
  }

  /** This JVM's loads of `artifactDir` not yet reported, taken off the queue (SparkNer adds them to an accumulator). */
  def drainLoads(artifactDir: String): Seq[ModelLoad] =
    unreported.iterator().asScala.filter(_.artifactDir == artifactDir).toVector.filter(l => unreported.remove(l))

  private def onShutdown(): Unit = {
    val n = closeAll()
    if (n > 0) System.err.println(s"ExecutorModel: closed $n pyner model(s) at JVM shutdown")
  }

  /** Closes and forgets every model of this JVM (the shutdown hook calls it); returns how many. */
  def closeAll(): Int = {
    val closing = models.keySet().asScala.toList.flatMap(k => Option(models.remove(k)))
    closing.foreach(_.close())
    closing.size
  }
}

/** The input format of `pyner predict -i FILE`, line by line. */
object InputLines {
  sealed trait Mode extends Serializable
  case object Text extends Mode
  case object JsonLines extends Mode

  /** Python's str.isspace for every character (NBSP and NEL included, which Java's trim misses). */
  def isBlank(s: String): Boolean =
    s.forall(c => Character.isWhitespace(c) || Character.isSpaceChar(c) || c == '\u0085')

  /** JSON Lines when the first non-blank line starts with '{', else plain text. */
  def detect(firstNonBlank: Option[String]): Mode =
    if (firstNonBlank.exists(l => l.dropWhile(c => isBlank(c.toString)).startsWith("{"))) JsonLines else Text

  /** Parses lines of one file; not thread-safe (one per partition). */
  final class Parser(name: String, mode: Mode) {
    private lazy val mapper = new ObjectMapper().enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)

    /** None for a blank line between JSON records; Left for a bad line; Right for a document. */
    def parse(line: Long, body: String): Option[Either[SparkNer.BadLine, SparkNer.Doc]] = mode match {
      case Text                     => Some(Right(SparkNer.Doc(line.toString, line, body)))
      case JsonLines if isBlank(body) => None
      case JsonLines                => Some(json(line, body))
    }

    private def bad(line: Long, msg: String) = Left(SparkNer.BadLine(line, s"$name:$line: $msg"))

    private def json(line: Long, body: String): Either[SparkNer.BadLine, SparkNer.Doc] = {
      val node: JsonNode =
        try mapper.readTree(body)
        catch {
          case e: JsonProcessingException =>
            val col = Option(e.getLocation).map(l => s" at column ${l.getColumnNr}").getOrElse("")
            return bad(line, s"invalid JSON (${e.getOriginalMessage.linesIterator.next()}$col)")
        }
      if (node == null || !node.isObject) return bad(line, s"""expected a JSON object with a "text" field, got ${kind(node)}""")
      val text = node.get("text")
      if (text == null || !text.isTextual) return bad(line, s""""text" must be a string, got ${if (text == null) "nothing" else kind(text)}""")
      val id = node.get("id") match {
        case null                 => line.toString
        case n if n.isTextual     => n.asText()
        case n                    => n.toString
      }
      Right(SparkNer.Doc(id, line, text.asText()))
    }

    private def kind(n: JsonNode): String =
      if (n == null || n.isMissingNode) "nothing" else n.getNodeType.toString.toLowerCase(java.util.Locale.ROOT)
  }
}
