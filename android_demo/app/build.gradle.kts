// The demo app: thin UI over the kit. minSdk 26 (Android 8.0: NNAPI 1.1, java.nio direct buffers, the photo
// picker via the AndroidX back-port); targetSdk 35. Versions pinned.
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "io.sapiensedge.demo"
    compileSdk = 35
    defaultConfig {
        applicationId = "io.sapiensedge.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    // Models are 100+ MB: never bundled; `.pte`/`.tflite`/`.onnx` stay uncompressed if someone adds a small one.
    androidResources { noCompress += listOf("onnx", "pte", "tflite") }
}

kotlin { compilerOptions { jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17) } }

dependencies {
    implementation(project(":kit"))
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.activity:activity-ktx:1.9.3")
    implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.8.7")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
    // CameraX: preview + ImageAnalysis (keep-only-latest), RGBA output.
    implementation("androidx.camera:camera-camera2:1.4.1")
    implementation("androidx.camera:camera-lifecycle:1.4.1")
    implementation("androidx.camera:camera-view:1.4.1")
    // Engines behind the kit's Backend interface.
    implementation("com.microsoft.onnxruntime:onnxruntime-android:1.23.2") // ai.onnxruntime: CPU, XNNPACK, NNAPI
    // .pte with the XNNPACK delegate: the same release as the ExecuTorch that exported (tool_versions in the manifest; 1.5.1 here).
    implementation("org.pytorch:executorch-android:1.5.1")
    implementation("com.google.ai.edge.litert:litert:1.4.0") // .tflite (LiteRT, the TensorFlow Lite runtime)
}
