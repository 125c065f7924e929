// The pyner Scala sample: in-process (pyner-jvm), plain DJL, the gRPC sidecar, and Spark.
// Run with ./sbtw (Maven Central and ~/.m2 are the only repositories; see sbtw).

val pynerJvmVersion = "0.1.0"  // dev.pyner:pyner-jvm, from ~/.m2: `cd ../jvm_bridge && mvn -B -q install -DskipTests`
val djlVersion      = "0.38.0"
val ortVersion      = "1.29.0" // same ONNX Runtime as the Python side: bit-identical scores
val grpcVersion     = "1.83.0" // the newest grpc-java whose protoc plugin binary is on Maven Central
val protobufVersion = "4.33.0" // protoc and protobuf-java, the line Spark 4.1 builds with
val sparkVersion    = "4.1.3"
val jacksonVersion  = "2.20.1"

ThisBuild / scalaVersion := "2.13.18" // Spark 4.1 pulls in scala-library 2.13.18 (SIP-51: compiler >= library)
ThisBuild / organization := "dev.pyner"
ThisBuild / version      := "0.1.0"

lazy val root = (project in file("."))
  .settings(
    name := "pyner-sbt-sample",
    scalacOptions ++= Seq("-deprecation", "-feature", "-unchecked", "-Xlint:_,-byname-implicit", "-release", "17"),
    javacOptions ++= Seq("--release", "17"),
    libraryDependencies ++= Seq(
      "ai.djl"                  % "api"                  % djlVersion,
      "ai.djl.huggingface"      % "tokenizers"           % djlVersion,
      "ai.djl.onnxruntime"      % "onnxruntime-engine"   % djlVersion,
      "com.microsoft.onnxruntime" % "onnxruntime"        % ortVersion,
      "io.grpc"                 % "grpc-netty-shaded"    % grpcVersion,
      "io.grpc"                 % "grpc-protobuf"        % grpcVersion,
      "io.grpc"                 % "grpc-stub"            % grpcVersion,
      "com.google.protobuf"     % "protobuf-java"        % protobufVersion,
      "javax.annotation"        % "javax.annotation-api" % "1.3.2", // @Generated in grpc-java stubs
      "org.apache.spark"       %% "spark-sql"            % sparkVersion,
      "io.grpc"                 % "protoc-gen-grpc-java" % grpcVersion asProtocPlugin(),
      "org.scalatest"          %% "scalatest"            % "3.2.19" % Test,
    ),
    dependencyOverrides ++= Seq(
      "com.microsoft.onnxruntime" % "onnxruntime"   % ortVersion, // onnxruntime-engine asks for 1.21.1
      "com.google.protobuf"       % "protobuf-java" % protobufVersion,
    ),

    // gRPC stubs from the repository's proto/ folder, generated into target/ at compile time.
    PB.protocVersion := protobufVersion,
    Compile / PB.protoSources := Seq(baseDirectory.value / ".." / "proto"),
    Compile / PB.targets := Seq(
      PB.gens.java(protobufVersion) -> (Compile / sourceManaged).value,
      PB.gens.plugin("grpc-java")   -> (Compile / sourceManaged).value,
    ),
  )
