import SwiftUI

@main
struct MegrezDemoApp: App {
    @StateObject private var chat = ChatModel()

    var body: some Scene {
        WindowGroup {
            ChatView()
                .environmentObject(chat)
                .task { chat.refreshBundles() }
        }
    }
}
