export { createTopicModule, type TopicModule } from "./topic.module.js";
