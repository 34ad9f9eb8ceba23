// The app id syntax, one definition for every component: an id goes into Kubernetes label values
// (at most 63 characters, starting and ending alphanumeric), into the names of the objects the
// operator derives from it (`<id>-herald-webpush-sender`, a DNS subdomain), into Kafka topic and
// consumer group names, and into API key prefixes (hk_s_<id>_…). 1-63 characters of a-z 0-9 -,
// starting with a letter and not ending with '-' fits all of them.
export const APP_ID_PATTERN = /^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$/;
export const APP_ID_MAX_LENGTH = 63;
export const APP_ID_RULE = "1-63 characters of a-z 0-9 -, starting with a letter and ending with a letter or digit";
export const isAppId = (value: string): boolean => APP_ID_PATTERN.test(value);
