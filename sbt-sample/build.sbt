// The pyner Scala sample: in-process (pyner-jvm), plain DJL, the gRPC sidecar, Spark, and Spark streaming from Kafka.
// Run with ./sbtw (the staged release dist/maven and Maven Central are the only repositories; see sbtw).
// Cross-built: Spark 3.5 on Scala 2.12 and Spark 4.1 on Scala 2.13 (`sbtw "+test"` runs both).

// dev.pyner:pyner-jvm, from the staged release ../dist/maven (`make jvm-release`), as a user resolves it
// from Central, at the version its pom declares: the version is written once, in jvm_bridge/pom.xml.
val pynerJvmVersion: String = {
  val pom = scala.xml.XML.loadFile(file("..") / "jvm_bridge" / "pom.xml")
  (pom \ "version").headOption.map(_.text.trim).filter(_.nonEmpty)
    .getOrElse(sys.error("jvm_bridge/pom.xml has no <version>"))
}
val pynerDist: File = (file("..") / "dist" / "maven").getCanonicalFile
val grpcVersion     = "1.83.0" // the newest grpc-java whose protoc plugin binary is on Maven Central
val protobufVersion = "4.33.0" // protoc and protobuf-java, the line Spark 4.1 builds with
val kafkaVersion    = "4.1.1"  // the broker the streaming tests start (KRaft only; its own JVM, see kafkaBroker below)

// The Spark/Scala pairs the sample is tested on (docs/scala.md): Spark is chosen by the Scala version.
val scala212 = "2.12.20" // Spark 3.5.x is built for Scala 2.12 (and 2.13); 2.12 is what most 3.5 clusters run
val scala213 = "2.13.18" // Spark 4.1 pulls in scala-library 2.13.18 (SIP-51: compiler >= library)
def sparkVersionFor(scalaVersion: String): String = CrossVersion.partialVersion(scalaVersion) match {
  case Some((2, 12)) => "3.5.9"
  case Some((2, 13)) => "4.1.3"
  case other         => sys.error(s"no Spark version chosen for Scala $scalaVersion")
}
// Spark's Kafka connector (StreamingNer) belongs at the Spark version (use that on your cluster). The Maven
// Central this project's machines reach serves only some of its releases: 3.5.1 on Scala 2.12 (not 3.5.9),
// and 4.1.3 on Scala 2.13 but its spark-token-provider-kafka-0-10 dependency only at 4.1.1 (that module
// holds Kafka delegation-token support, unused here). Both are tested against the Spark above.
def sparkKafkaFor(scalaVersion: String): Seq[ModuleID] = CrossVersion.partialVersion(scalaVersion) match {
  case Some((2, 12)) => Seq("org.apache.spark" %% "spark-sql-kafka-0-10" % "3.5.1")
  case _ => Seq("org.apache.spark" %% "spark-sql-kafka-0-10" % sparkVersionFor(scalaVersion)
                  exclude("org.apache.spark", s"spark-token-provider-kafka-0-10_${CrossVersion.binaryScalaVersion(scalaVersion)}"),
                "org.apache.spark" %% "spark-token-provider-kafka-0-10" % "4.1.1")
}

ThisBuild / scalaVersion       := scala213
ThisBuild / crossScalaVersions := Seq(scala212, scala213)
ThisBuild / organization := "dev.pyner"
ThisBuild / version      := pynerJvmVersion // the sample is versioned with the library it shows
ThisBuild / resolvers    += "pyner-dist" at pynerDist.toURI.toString // for a plain sbt; sbtw lists it itself

val checkPynerDist = taskKey[Unit]("fail early, naming make jvm-release, when dist/maven has no pyner-jvm")

lazy val root = (project in file("."))
  .settings(
    name := "pyner-sbt-sample",
    scalacOptions ++= Seq("-deprecation", "-feature", "-unchecked", "-release", "17") ++
      (CrossVersion.partialVersion(scalaVersion.value) match {
        case Some((2, 12)) => Seq("-Xlint:_,-unused", "-Ywarn-unused:imports")
        case _             => Seq("-Xlint:_,-byname-implicit")
      }),
    javacOptions ++= Seq("--release", "17"),
    libraryDependencies ++= Seq(
      "dev.pyner"               % "pyner-jvm"            % pynerJvmVersion, // brings DJL 0.38.0 and ONNX Runtime 1.29.0
      "io.grpc"                 % "grpc-netty-shaded"    % grpcVersion,
      "io.grpc"                 % "grpc-protobuf"        % grpcVersion,
      "io.grpc"                 % "grpc-stub"            % grpcVersion,
      "io.grpc"                 % "grpc-services"        % grpcVersion, // grpc.health.v1 client (tests wait for SERVING)
      "com.google.protobuf"     % "protobuf-java"        % protobufVersion,
      "javax.annotation"        % "javax.annotation-api" % "1.3.2", // @Generated in grpc-java stubs
      "org.apache.spark"       %% "spark-sql"            % sparkVersionFor(scalaVersion.value),
      "org.scala-lang.modules" %% "scala-collection-compat" % "2.13.0", // scala.util.Using, scala.jdk.CollectionConverters on 2.12
      "io.grpc"                 % "protoc-gen-grpc-java" % grpcVersion asProtocPlugin(),
      "org.scalatest"          %% "scalatest"            % "3.2.19" % Test,
    ) ++ sparkKafkaFor(scalaVersion.value), // StreamingNer's Kafka source and sink
    dependencyOverrides ++= Seq(
      "com.google.protobuf"       % "protobuf-java" % protobufVersion,
    ),
    checkPynerDist := {
      val jar = pynerDist / "dev" / "pyner" / "pyner-jvm" / pynerJvmVersion / s"pyner-jvm-$pynerJvmVersion.jar"
      if (!jar.isFile) sys.error(s"$jar not found: run `make jvm-release` first (it stages pyner-jvm into dist/maven)")
    },
    update := (update dependsOn checkPynerDist).value,

    // gRPC stubs from the repository's proto/ folder, generated into target/ at compile time.
    PB.protocVersion := protobufVersion,
    Compile / PB.protoSources := Seq(baseDirectory.value / ".." / "proto"),
    Compile / PB.targets := Seq(
      PB.gens.java(protobufVersion) -> (Compile / sourceManaged).value,
      PB.gens.plugin("grpc-java")   -> (Compile / sourceManaged).value,
    ),
  )

// The Kafka broker of the streaming tests and benchmark (StreamingNerSpec, StreamingBench): resolved from
// Maven Central like everything else, and run in a JVM of its own (`java -cp <these jars> kafka.Kafka
// server.properties`, KafkaBroker in src/test). Kafka 4 is KRaft-only and built for Scala 2.13 only, so
// it cannot share the Scala 2.12 / Spark 3.5 leg's class path; in its own process it never meets
// Spark's class path at all, on either leg. Only resolved: this project has no sources.
lazy val kafkaBroker = (project in file("kafka-broker"))
  .settings(
    name := "pyner-kafka-broker",
    autoScalaLibrary := false, // Kafka brings its own Scala 2.13 library, whatever the sample's Scala version
    crossPaths := false,
    publish / skip := true,
    libraryDependencies ++= Seq(
      "org.apache.kafka"         % "kafka_2.13"        % kafkaVersion,
      "org.apache.logging.log4j" % "log4j-slf4j2-impl" % "2.24.3", // the broker's log, through the log4j2 file KafkaBroker writes
    ),
  )

// Spark on Java 17 needs these (what spark-submit adds by itself; sbt's forked JVMs do not get them).
val sparkJavaOptions = Seq(
  "-XX:+IgnoreUnrecognizedVMOptions",
  "--add-opens=java.base/java.lang=ALL-UNNAMED",
  "--add-opens=java.base/java.lang.invoke=ALL-UNNAMED",
  "--add-opens=java.base/java.lang.reflect=ALL-UNNAMED",
  "--add-opens=java.base/java.io=ALL-UNNAMED",
  "--add-opens=java.base/java.net=ALL-UNNAMED",
  "--add-opens=java.base/java.nio=ALL-UNNAMED",
  "--add-opens=java.base/java.util=ALL-UNNAMED",
  "--add-opens=java.base/java.util.concurrent=ALL-UNNAMED",
  "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
  "--add-opens=java.base/jdk.internal.ref=ALL-UNNAMED",
  "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
  "--add-opens=java.base/sun.nio.cs=ALL-UNNAMED",
  "--add-opens=java.base/sun.security.action=ALL-UNNAMED",
  "--add-opens=java.base/sun.util.calendar=ALL-UNNAMED",
  "-Djdk.reflect.useDirectMethodHandle=false",
  "-Dio.netty.tryReflectionSetAccessible=true",
)

// The Python side: the pyner CLI (parity oracle, sidecar) and the tiny test artifacts it packages.
val repoRoot = settingKey[File]("the pyner repository (parent of sbt-sample)")
val pynerBin = settingKey[String]("the pyner CLI: env PYNER_BIN, else <repo>/.venv/bin/pyner")
val testArtifactsDir = settingKey[File]("tiny test artifacts: env PYNER_TEST_ARTIFACTS, else jvm_bridge's")
val testArtifacts = taskKey[File]("package the test artifacts (a no-op when up to date)")

ThisBuild / repoRoot := (ThisBuild / baseDirectory).value.getParentFile

// Every JVM this build starts runs with DJL offline and without tracking, a modest heap, 2 cores.
val jvmEnv = Map("DJL_OFFLINE" -> "true", "OPT_OUT_TRACKING" -> "true", "SPARK_LOCAL_IP" -> "127.0.0.1")

root / pynerBin := sys.env.getOrElse("PYNER_BIN", ((ThisBuild / repoRoot).value / ".venv" / "bin" / "pyner").getPath)
root / testArtifactsDir := sys.env.get("PYNER_TEST_ARTIFACTS").map(file)
  .getOrElse((ThisBuild / repoRoot).value / "jvm_bridge" / "target" / "test-artifacts")

root / testArtifacts := {
  val out = (root / testArtifactsDir).value
  val repo = (ThisBuild / repoRoot).value
  val python = file((root / pynerBin).value).getParentFile / "python"
  val log = streams.value.log
  if (sys.env.contains("PYNER_TEST_ARTIFACTS")) log.info(s"test artifacts: using $out as given (PYNER_TEST_ARTIFACTS)")
  else {
    // Keyed on the exporter/runtime sources: re-packages only when they changed (shared with jvm_bridge's build).
    val rc = scala.sys.process.Process(Seq(python.getPath, "tests/make_test_artifacts.py", out.getPath), repo)
      .!(scala.sys.process.ProcessLogger(line => log.info(line), line => log.info(line)))
    if (rc != 0) sys.error(s"tests/make_test_artifacts.py failed (exit $rc); is the Python environment built (scripts/bootstrap)?")
  }
  out
}

// A Spark home for Spark's local-cluster[N,cores,MB] master, whose workers launch each executor as a
// separate JVM with SPARK_HOME/jars/* on its class path: jars/ links every runtime dependency jar this
// build resolved from Maven Central (Spark itself, pyner-jvm, DJL, ONNX Runtime, ...), one folder per
// Scala version. The sample's own classes reach the executors through spark.executor.extraClassPath.
val sparkHome = taskKey[File]("a Spark home (jars/ = the runtime dependency jars) for local-cluster masters")
root / sparkHome := {
  val home = crossTarget.value / "spark-home"
  val jars = home / "jars"
  val deps = (Runtime / dependencyClasspath).value.files.filter(f => f.isFile && f.getName.endsWith(".jar"))
  IO.delete(jars) // links only: the jars themselves stay in the coursier cache
  IO.delete(home / "work") // the workers' folders of earlier runs (executor logs, unpacked artifacts)
  IO.createDirectory(jars)
  val seen = scala.collection.mutable.Set.empty[String]
  for ((jar, i) <- deps.zipWithIndex) {
    val name = if (seen.add(jar.getName)) jar.getName else s"$i-${jar.getName}" // two artifacts, one file name
    val link = (jars / name).toPath
    try java.nio.file.Files.createSymbolicLink(link, jar.toPath)
    catch { case _: UnsupportedOperationException | _: java.io.IOException => IO.copyFile(jar, link.toFile) }
  }
  streams.value.log.debug(s"spark home $home: ${deps.size} jars")
  home
}
// What a local-cluster master needs in the driver's JVM: the Spark home, the Scala version Spark's
// launcher would otherwise look for in a Spark source tree, the sample's classes for the executors.
def localClusterEnv(home: File, scalaBinary: String): Map[String, String] =
  Map("SPARK_HOME" -> home.getPath, "SPARK_SCALA_VERSION" -> scalaBinary)

root / run / fork := true
root / run / envVars ++= jvmEnv ++ localClusterEnv((root / sparkHome).value, scalaBinaryVersion.value)
root / run / javaOptions ++= Seq("-Xmx1g", s"-Dlog4j2.configurationFile=${baseDirectory.value / "conf" / "log4j2.properties"}") ++ sparkJavaOptions ++
  Seq(s"-Dspark.executor.extraClassPath=${(Compile / classDirectory).value}")
root / run / connectInput := true

root / Test / fork := true
root / Test / envVars ++= jvmEnv ++ localClusterEnv((root / sparkHome).value, scalaBinaryVersion.value)
root / Test / javaOptions ++= Seq("-Xmx1536m", "-Xss4m") ++ sparkJavaOptions ++ Seq(
  s"-Dpyner.bin=${(root / pynerBin).value}",
  s"-Dpyner.testArtifacts=${(root / testArtifactsDir).value}",
  s"-Dpyner.repo=${(ThisBuild / repoRoot).value}",
  s"-Dpyner.runtimeClasspath=${(Runtime / fullClasspath).value.files.mkString(java.io.File.pathSeparator)}",
  s"-Dpyner.sparkJavaOptions=${sparkJavaOptions.mkString(" ")}",
  s"-Dpyner.log4j=${baseDirectory.value / "conf" / "log4j2.properties"}",
  s"-Dpyner.executorClassPath=${(Compile / classDirectory).value}",
  s"-Dpyner.kafkaClasspath=${(kafkaBroker / Runtime / managedClasspath).value.files.mkString(java.io.File.pathSeparator)}",
  s"-Dpyner.wikigold=${sys.env.getOrElse("PYNER_WIKIGOLD", ((ThisBuild / repoRoot).value.getParentFile / "shared" / "data" / "ner" / "wikigold" / "test.bio").getPath)}",
)
root / Test / testOptions += Tests.Argument(TestFrameworks.ScalaTest, "-oDF")
root / Test / test := ((root / Test / test) dependsOn (root / testArtifacts)).value
root / Test / testOnly := ((root / Test / testOnly) dependsOn (root / testArtifacts)).evaluated

// After sbt's own summary, one plain closing line that CI systems read: "sbt-sample: N passed, N failed".
val closingLine = TestResultLogger { (log, results, taskName) =>
  TestResultLogger.Default.run(log, results, taskName)
  val suites = results.events.values
  val passed = suites.map(_.passedCount).sum
  val failed = suites.map(s => s.failureCount + s.errorCount).sum + (if (results.overall == TestResult.Error && suites.isEmpty) 1 else 0)
  val skipped = suites.map(s => s.skippedCount + s.ignoredCount + s.canceledCount + s.pendingCount).sum
  println(s"sbt-sample: $passed passed, $failed failed" + (if (skipped > 0) s", $skipped skipped" else ""))
}
root / Test / test / testResultLogger := closingLine
root / Test / testOnly / testResultLogger := closingLine
