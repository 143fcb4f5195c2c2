import pkg from '../package.json' with { type: 'json' };

export const STEWARD_VERSION: string = pkg.version;
