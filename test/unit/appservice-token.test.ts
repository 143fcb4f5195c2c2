import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hasQueryToken, presentedToken, tokensMatch } from '../../src/appservice/token.ts';

describe('tokensMatch', () => {
  const expected = 'hs_token_0123456789abcdef';

  it('matches the same token', () => {
    assert.equal(tokensMatch('hs_token_0123456789abcdef', expected), true);
  });

  it('refuses a different token of the same length', () => {
    assert.equal(tokensMatch('hs_token_0123456789abcdeF', expected), false);
  });

  it('refuses tokens of other lengths, prefixes and extensions included', () => {
    assert.equal(tokensMatch('hs_token', expected), false);
    assert.equal(tokensMatch(`${expected}0`, expected), false);
    assert.equal(tokensMatch(expected.slice(0, -1), expected), false);
    assert.equal(tokensMatch('x'.repeat(10_000), expected), false);
  });

  it('refuses an absent or empty token', () => {
    assert.equal(tokensMatch(undefined, expected), false);
    assert.equal(tokensMatch('', expected), false);
  });
});

describe('presentedToken', () => {
  it('reads a Bearer authorization header, any case, trimmed', () => {
    assert.equal(presentedToken('Bearer abc.def', {}), 'abc.def');
    assert.equal(presentedToken('bearer   abc ', {}), 'abc');
    assert.equal(presentedToken('BEARER abc', undefined), 'abc');
  });

  it('prefers the header over the legacy query parameter', () => {
    assert.equal(presentedToken('Bearer from-header', { access_token: 'from-query' }), 'from-header');
    assert.equal(presentedToken('Bearer from-header', { access_token: 'from-query' }, true), 'from-header');
  });

  it('ignores the access_token query parameter unless it is allowed', () => {
    assert.equal(presentedToken(undefined, { access_token: 'legacy' }), undefined);
    assert.equal(presentedToken('Basic dXNlcjpwYXNz', { access_token: 'legacy' }), undefined);
    assert.equal(hasQueryToken({ access_token: 'legacy' }), true);
    assert.equal(hasQueryToken({ access_token: '' }), true);
    assert.equal(hasQueryToken({}), false);
    assert.equal(hasQueryToken(undefined), false);
  });

  it('falls back to the legacy access_token query parameter when allowed', () => {
    assert.equal(presentedToken(undefined, { access_token: 'legacy' }, true), 'legacy');
    assert.equal(presentedToken('Basic dXNlcjpwYXNz', { access_token: 'legacy' }, true), 'legacy');
  });

  it('finds nothing in other schemes, empty bearers or non-string query values', () => {
    assert.equal(presentedToken('Basic dXNlcjpwYXNz', {}), undefined);
    assert.equal(presentedToken('Bearer', {}), undefined);
    assert.equal(presentedToken('Bearer ', {}), undefined);
    assert.equal(presentedToken(undefined, { access_token: ['a', 'b'] }, true), undefined);
    assert.equal(presentedToken(undefined, undefined), undefined);
    assert.equal(presentedToken(undefined, {}), undefined);
  });
});
