//! Merging: a k-way merge of several sorted series sets by labels (series with equal labels are
//! combined), and a sample iterator that merges several iterators of one series in time order,
//! keeping one sample per timestamp (the first source wins on conflicts).
