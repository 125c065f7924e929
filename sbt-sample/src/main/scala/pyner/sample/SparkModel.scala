package pyner.sample

import java.nio.file.Paths
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicInteger

import scala.jdk.CollectionConverters._

import org.apache.spark.SparkFiles
import org.apache.spark.sql.SparkSession

import dev.pyner.{AggregationStrategy, OnMissingGpu, PynerModel}
import dev.pyner.artifact.Manifest

// What SparkNer (batch) and StreamingNer (Kafka) share: the model flags, the Spark session a main runs
// in, where executors find the artifact, one model per executor JVM, and the per-task inference.

/** The flags of the model and of how executors run it, parsed and checked in one place for every Spark main. */
final case class ModelOptions(artifact: String = "", aggregation: String = "simple", shipArtifact: Boolean = false,
                              master: Option[String] = None, batchSize: Int = 256, threads: Int = 1,
                              expectDigest: Option[String] = None, device: String = "cpu",
                              onMissingGpu: OnMissingGpu = OnMissingGpu.FAIL) {

  /** On the driver, before any work: the artifact exists (exit 4), matches its pin (exit 4, naming both
    * digests; every executor's load is pinned again), and the aggregation strategy is known.
    */
  def checked(): ModelOptions.Checked = {
    val dir = Cli.requireArtifact(Paths.get(artifact).toAbsolutePath.normalize())
    expectDigest.foreach(d => Manifest.read(dir).checkDigest(d))
    ModelOptions.Checked(this, dir, Cli.aggregation(aggregation))
  }
}

object ModelOptions {
  /** The usage lines of these flags. */
  val Usage: String =
    """[--aggregation simple] [--ship-artifact] [--master local[2]] [--batch-size 256] [--threads 1]
      |[--expect-digest sha256:...] [--device cpu|cuda|cuda:N] [--on-missing-gpu fail|fallback]""".stripMargin

  final case class Checked(options: ModelOptions, artifactDir: java.nio.file.Path, strategy: AggregationStrategy) {
    /** What the tasks carry: where executors find the artifact (a path they all see, or a copy shipped
      * with the job: one archive through addArchive, since a folder through addFile is refused by every
      * non-local master), and how to load and run it.
      */
    def task(sc: org.apache.spark.SparkContext): NerTask = {
      val o = options
      val locate = if (o.shipArtifact) ShipArtifact.ship(sc, artifactDir) else SharedPath(artifactDir.toString)
      NerTask(locate, o.threads, o.expectDigest, o.device, o.onMissingGpu, strategy, o.batchSize)
    }
  }

  /** A main's arguments, left to right: `--flag value` pairs and the bare `--ship-artifact`; the model's
    * flags (below) update `model(o)`, any other flag goes to `own(o, flag, value)`, which throws on one it
    * does not know; a value without its flag is a usage error.
    */
  def parseAll[O](args: Array[String], init: O, usage: String)(model: O => ModelOptions, withModel: (O, ModelOptions) => O)
                 (own: (O, String, String) => O): O = {
    @annotation.tailrec
    def loop(rest: List[String], o: O): O = rest match {
      case Nil                       => o
      case "--ship-artifact" :: tail => loop(tail, withModel(o, model(o).copy(shipArtifact = true)))
      case flag :: value :: tail if flag.startsWith("--") =>
        loop(tail, parse(flag, value, model(o)).map(withModel(o, _)).getOrElse(own(o, flag, value)))
      case other :: _ => throw SampleError.usage(s"unexpected argument '$other'\n$usage")
    }
    loop(args.toList, init)
  }

  /** Parses `--flag value` when it is one of these flags: Some(updated), else None (the caller's own flag). */
  def parse(flag: String, value: String, o: ModelOptions): Option[ModelOptions] = {
    def int(): Int = Cli.positiveInt(flag, value)
    flag match {
      case "--artifact"    => Some(o.copy(artifact = value))
      case "--aggregation" => Some(o.copy(aggregation = value))
      case "--master"      => Some(o.copy(master = Some(value)))
      case "--batch-size"  => Some(o.copy(batchSize = int()))
      case "--threads"     => Some(o.copy(threads = int()))
      case "--device" =>
        try { dev.pyner.runtime.Gpu.parseDevice(value); Some(o.copy(device = value)) }
        catch { case e: IllegalArgumentException => throw SampleError.usage(s"--device: ${e.getMessage}") }
      case "--on-missing-gpu" =>
        try Some(o.copy(onMissingGpu = OnMissingGpu.fromName(value)))
        catch { case e: IllegalArgumentException => throw SampleError.usage(s"--on-missing-gpu: ${e.getMessage}") }
      case "--expect-digest" =>
        try Some(o.copy(expectDigest = Some(Manifest.parseDigest(value))))
        catch { case e: IllegalArgumentException => throw SampleError.usage(s"--expect-digest: ${e.getMessage}") }
      case _ => None
    }
  }

  /** After parsing: the flags that must hold before anything starts. */
  def validate(o: ModelOptions, usage: String): ModelOptions = {
    if (o.artifact.isEmpty) throw SampleError.usage(s"--artifact is required\n$usage")
    try Cli.aggregation(o.aggregation) // rejects unknown names, listing the valid ones
    catch { case e: IllegalArgumentException => throw SampleError.usage(s"--aggregation: ${e.getMessage}") }
    o
  }
}

/** The Spark session of a sample main. Under spark-submit the master comes from there; from sbt it is
  * `--master`, default local[2] (a local-cluster master is checked for its Spark home first).
  */
object SparkApp {
  def session(appName: String, master: Option[String]): SparkSession = {
    val builder = SparkSession.builder().appName(appName)
    if (!sys.props.contains("spark.master")) {
      val m = master.getOrElse("local[2]")
      checkLocalCluster(m, sys.env.get("SPARK_HOME").orElse(sys.props.get("spark.home")))
      builder.master(m)
      if (m.startsWith("local")) builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
      // every executor JVM registered (or 30 s passed) before the first task: else the first one up runs them all
      if (m.startsWith("local-cluster")) builder.config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
    }
    builder.config("spark.ui.enabled", "false").getOrCreate()
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

  /** One line on the model loads the executors reported: how many JVMs, and each one's loads. */
  def loadsLine(loads: Seq[ModelLoad]): String = {
    val byJvm = loads.groupBy(l => (l.executorId, l.pid)).toSeq.sortBy(_._1._1)
    s"${loads.size} model load(s) in ${byJvm.size} executor JVM(s): " +
      byJvm.map { case ((id, pid), ls) => s"executor $id (pid $pid) ${ls.size}" }.mkString(", ")
  }
}

/** The executor side of inference, for every Spark main: this JVM's one model ([[ExecutorModel]]),
  * documents in batches of `batchSize` per predict call (pyner sorts a call's texts by length, so
  * larger batches waste less on padding). Built on the driver by [[ModelOptions.Checked.task]] and sent
  * with the tasks.
  */
final case class NerTask(locate: ArtifactLocation, threads: Int, expectDigest: Option[String], device: String,
                         onMissingGpu: OnMissingGpu, strategy: AggregationStrategy, batchSize: Int) {

  /** This executor JVM's model, loaded by the first task that asks; its load, when not yet reported, goes
    * to `report` (once, from a task of the JVM that loaded it: the driver sees it through an accumulator).
    */
  def model(report: ModelLoad => Unit): PynerModel = {
    val dir = locate.resolve()
    val model = ExecutorModel.get(dir, threads, expectDigest, device, onMissingGpu) // once per executor JVM
    ExecutorModel.drainLoads(dir).foreach(report)
    model
  }

  /** One predict call: each document with its entities, in order. */
  def predict[D](model: PynerModel, batch: Seq[D])(text: D => String): Seq[(D, Seq[Ent])] =
    if (batch.isEmpty) Nil
    else batch.zip(model.predict(batch.map(text).asJava, strategy).asScala.map(_.asScala.toSeq.map(Ent.of)))

  /** A partition's documents, `batchSize` per predict call, each with its entities, in order. */
  def recognize[D](docs: Iterator[D], report: ModelLoad => Unit)(text: D => String): Iterator[(D, Seq[Ent])] = {
    val m = model(report)
    docs.grouped(batchSize).flatMap(batch => predict(m, batch)(text))
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

  /** This JVM's loads of `artifactDir` not yet reported, taken off the queue (NerTask.model reports them). */
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
