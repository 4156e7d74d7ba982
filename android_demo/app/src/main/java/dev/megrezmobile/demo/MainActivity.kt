package dev.megrezmobile.demo

import android.Manifest
import android.content.pm.PackageManager
import android.net.Uri
import android.os.Bundle
import androidx.activity.ComponentActivity
import androidx.activity.compose.rememberLauncherForActivityResult
import androidx.activity.compose.setContent
import androidx.activity.result.PickVisualMediaRequest
import androidx.activity.result.contract.ActivityResultContracts
import androidx.activity.viewModels
import androidx.compose.foundation.layout.Arrangement
import androidx.compose.foundation.layout.Column
import androidx.compose.foundation.layout.Row
import androidx.compose.foundation.layout.fillMaxSize
import androidx.compose.foundation.layout.fillMaxWidth
import androidx.compose.foundation.layout.padding
import androidx.compose.foundation.lazy.LazyColumn
import androidx.compose.foundation.lazy.items
import androidx.compose.material3.Button
import androidx.compose.material3.MaterialTheme
import androidx.compose.material3.OutlinedTextField
import androidx.compose.material3.Text
import androidx.compose.material3.TextButton
import androidx.compose.runtime.Composable
import androidx.compose.runtime.getValue
import androidx.compose.runtime.mutableStateOf
import androidx.compose.runtime.remember
import androidx.compose.runtime.setValue
import androidx.compose.ui.Modifier
import androidx.compose.ui.unit.dp
import androidx.core.content.ContextCompat
import androidx.core.content.FileProvider
import java.io.File

class MainActivity : ComponentActivity() {
    private val chat: ChatViewModel by viewModels()

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContent { MaterialTheme { ChatScreen(chat) } }
    }

    @Composable
    private fun ChatScreen(vm: ChatViewModel) {
        var input by remember { mutableStateOf("") }
        val pickFolder = rememberLauncherForActivityResult(ActivityResultContracts.OpenDocumentTree()) { it?.let(vm::import) }
        val pickPhoto = rememberLauncherForActivityResult(ActivityResultContracts.PickVisualMedia()) { it?.let(vm::attachImage) }
        val pickAudio = rememberLauncherForActivityResult(ActivityResultContracts.GetContent()) { it?.let(vm::attachAudioFile) }
        val cameraFile = remember { File(cacheDir, "camera/photo.jpg").apply { parentFile?.mkdirs() } }
        val cameraUri: Uri = remember { FileProvider.getUriForFile(this, "dev.megrezmobile.demo.files", cameraFile) }
        val takePhoto = rememberLauncherForActivityResult(ActivityResultContracts.TakePicture()) { ok ->
            if (ok) vm.attachImage(cameraUri)
        }
        val askMicrophone = rememberLauncherForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
            if (granted) vm.toggleRecording() else vm.status = "Recording needs the microphone permission."
        }

        Column(Modifier.fillMaxSize().padding(8.dp)) {
            Text(vm.status, style = MaterialTheme.typography.bodySmall)
            Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                vm.bundles().take(3).forEach { dir -> TextButton(onClick = { vm.open(dir) }, enabled = !vm.busy) { Text(dir.name) } }
                TextButton(onClick = { pickFolder.launch(null) }, enabled = !vm.busy) { Text("Import…") }
                TextButton(onClick = vm::newChat, enabled = !vm.busy) { Text("New chat") }
            }
            LazyColumn(Modifier.weight(1f).fillMaxWidth()) {
                items(vm.lines) { line ->
                    Column(Modifier.padding(vertical = 4.dp)) {
                        Text(if (line.role == "user") "You" else "Megrez", style = MaterialTheme.typography.labelMedium)
                        if (line.attachments.isNotEmpty()) Text("[${line.attachments}]", style = MaterialTheme.typography.bodySmall)
                        Text(line.text)
                        if (line.stats.isNotEmpty()) Text(line.stats, style = MaterialTheme.typography.bodySmall)
                    }
                }
            }
            val attached = listOfNotNull(vm.pendingImage?.let { "photo" }, vm.pendingAudio?.let { "audio" })
            if (attached.isNotEmpty()) Text("Attached: ${attached.joinToString()}", style = MaterialTheme.typography.bodySmall)
            Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                TextButton(onClick = { pickPhoto.launch(PickVisualMediaRequest(ActivityResultContracts.PickVisualMedia.ImageOnly)) }) { Text("Photo") }
                TextButton(onClick = { takePhoto.launch(cameraUri) }) { Text("Camera") }
                TextButton(onClick = {
                    val granted = ContextCompat.checkSelfPermission(this@MainActivity, Manifest.permission.RECORD_AUDIO) ==
                        PackageManager.PERMISSION_GRANTED
                    if (granted || vm.recording) vm.toggleRecording() else askMicrophone.launch(Manifest.permission.RECORD_AUDIO)
                }) { Text(if (vm.recording) "Stop rec" else "Record") }
                TextButton(onClick = { pickAudio.launch("audio/*") }) { Text("Audio file") }
            }
            Row(horizontalArrangement = Arrangement.spacedBy(4.dp)) {
                OutlinedTextField(input, { input = it }, Modifier.weight(1f), placeholder = { Text("Message") })
                if (vm.busy) Button(onClick = { vm.stop() }) { Text("Stop") }
                else Button(onClick = { vm.send(input); input = "" }) { Text("Send") }
            }
        }
    }
}
