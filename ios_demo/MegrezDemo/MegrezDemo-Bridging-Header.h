// Exposes our Objective-C++ runner wrapper to the app's Swift code.
#import "Runner/MegrezRunner.h"
