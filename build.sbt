// The Chisel build of the SpAtten accelerator.
// Only Maven Central is used (see tools/setup.sh: sbt runs with a repositories file that
// lists `local` and `maven-central` and -Dsbt.override.build.repos=true).
//
// Chisel 7.14.0 needs firtool 1.155.0, which Maven Central carries as
// org.chipsalliance:llvm-firtool. Its compiler plugin is published for Scala 2.13.16 only,
// while chisel_2.13 itself depends on scala-library 2.13.18; compiling with 2.13.16
// against the newer library is safe for Scala 2.13 (forward-compatible library) and is
// what allowUnsafeScalaLibUpgrade permits.
ThisBuild / scalaVersion := "2.13.16"
ThisBuild / allowUnsafeScalaLibUpgrade := true

val chiselVersion = "7.14.0"

lazy val spatten = (project in file("."))
  .settings(
    name := "spatten",
    Compile / scalaSource := baseDirectory.value / "hardware" / "src" / "main" / "scala",
    Compile / resourceDirectory := baseDirectory.value / "hardware" / "src" / "main" / "resources",
    // The DPI SystemVerilog of hardware/dpi/ is a BlackBox resource (see DramBlackBox.scala).
    Compile / unmanagedResourceDirectories += baseDirectory.value / "hardware" / "dpi" / "sv",
    Test / scalaSource := baseDirectory.value / "hardware" / "src" / "test" / "scala",
    libraryDependencies ++= Seq(
      "org.chipsalliance" %% "chisel" % chiselVersion,
      "org.chipsalliance" % "llvm-firtool" % "1.155.0"
    ),
    addCompilerPlugin(("org.chipsalliance" % "chisel-plugin" % chiselVersion).cross(CrossVersion.full)),
    scalacOptions ++= Seq("-deprecation", "-feature", "-unchecked", "-language:reflectiveCalls", "-Ymacro-annotations"),
    // Keep sbt's own outputs out of the source tree's hardware/ folder.
    target := baseDirectory.value / "build" / "sbt-target"
  )
