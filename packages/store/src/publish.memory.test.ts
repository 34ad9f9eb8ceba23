import { publishContract } from "./publish.contract.js";
import { createMemoryPublishRepository } from "./publish.repository.memory.js";

publishContract("memory", async () => createMemoryPublishRepository());
