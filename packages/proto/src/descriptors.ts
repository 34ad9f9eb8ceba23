import { fileURLToPath } from "node:url";

// The FileDescriptorSet written by `buf build`; gRPC reflection serves it.
export const descriptorSetPath = fileURLToPath(new URL("../descriptors.binpb", import.meta.url));
