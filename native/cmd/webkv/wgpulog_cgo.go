//go:build cgo && !js && !wasip1

package main

/*
#include <stdio.h>
#include <string.h>

// wgpu-native's log callback (wgpu.h: WGPULogCallback, wgpuSetLogCallback;
// the level is the WGPULogLevel enum, an int), declared here so that this
// file needs no header from the binding's module. The library itself is
// linked by github.com/cogentcore/webgpu/wgpu.
typedef void (*webkvLogCallback)(int level, char const *msg, void *userdata);
extern void wgpuSetLogCallback(webkvLogCallback callback, void *userdata);

// Warnings every headless machine prints while wgpu-native probes its
// backends (GL without a display, Vulkan without a window system); they say
// nothing about the compute device the workers get.
static const char *webkvNoise[] = {
	"No config found!",
	"No windowing system present",
	"Unable to find extension: VK_EXT_swapchain_colorspace",
	NULL,
};

static void webkvLog(int level, char const *msg, void *userdata) {
	static const char *names[] = {"Off", "Error", "Warn", "Info", "Debug", "Trace"};
	if (level == 2) {
		for (int i = 0; webkvNoise[i]; i++) {
			if (strstr(msg, webkvNoise[i])) {
				return;
			}
		}
	}
	fprintf(stderr, "[wgpu] [%s] %s\n", level >= 0 && level <= 5 ? names[level] : "Unknown Level", msg);
}

static void webkvQuietWGPU(void) { wgpuSetLogCallback(webkvLog, NULL); }
*/
import "C"

// quietWGPU replaces the binding's log callback (which prints every
// message of wgpu-native to stderr) with one that drops the start-up
// warnings of a headless machine (see webkvNoise) and prints the rest as
// before. The callback is the library's, for the whole process: the
// command sets it once, before it opens a device.
func quietWGPU() { C.webkvQuietWGPU() }
