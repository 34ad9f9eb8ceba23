export { createTopicModule, type TopicModule } from "./topic.module.js";
export { streamRecipients } from "./recipient.stream.js";
