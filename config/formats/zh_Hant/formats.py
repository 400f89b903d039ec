"""Hong Kong Chinese number format: 1,279 (groups of three), as HK government publications
write it; Django's zh_Hant default writes 1279 with no separator. Dates keep Django's
zh_Hant formats (2026年12月5日 20:45), which this module falls back to."""

THOUSAND_SEPARATOR = ","
NUMBER_GROUPING = 3
