import { storeContract } from "./store.contract.js";
import { createMemoryStore } from "./store.memory.js";

storeContract("memory", async () => createMemoryStore());
